/* trainer/grader_item.h: the host side of rft_item and rft_host: a dataset row
 * (jansson json_t) seen through dotted paths, with a per-call arena for the
 * strings handed to plugins, and the rft_host table given to each grader. */
#ifndef RFT_GRADER_ITEM_H
#define RFT_GRADER_ITEM_H

#include <jansson.h>
#include <stddef.h>

#include "rft_grader.h"

/* One row as a plugin sees it. Not shared between threads: every thread that
   grades wraps the (read-only) json_t in its own rft_item. */
struct rft_item {
    const json_t *row;   /* borrowed; never modified */
    char *arena;         /* strings returned by item_get/item_json this call */
    size_t used, cap;
    char *json;          /* cached item_json text (in the arena) */
    size_t json_len;
};

/* Wraps row (borrowed). */
void grader_item_init(rft_item *item, const json_t *row);
/* Forget the strings of the previous grade() call (keeps the arena). */
void grader_item_reset(rft_item *item);
/* Points the item at another row and resets it. */
void grader_item_set(rft_item *item, const json_t *row);
void grader_item_free(rft_item *item);

/* The json_t at a dotted path ("a.b[2].c", "nums.2" also indexes arrays);
   NULL if absent or malformed. Borrowed. */
const json_t *grader_json_path(const json_t *root, const char *path);

/* Compact JSON of v with reals in their shortest round-trip form ("0.1", not
   "0.10000000000000001"); malloc'd, NULL on allocation failure. */
char *grader_json_compact(const json_t *v, size_t *len);

/* The rft_host table rft gives a grader; `name` tags its log lines. */
typedef struct grader_host {
    rft_host host; /* first member: plugins see a pointer to this */
    char name[64];
} grader_host;

void grader_host_init(grader_host *h, const char *name);

#endif
