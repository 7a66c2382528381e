/* trainer/grader_proto.h: the private wire protocol between rft and its
 * grader worker processes (one AF_UNIX stream socket per worker, native byte
 * order, never seen by plugins). Every record starts with a magic word, so a
 * plugin that scribbles on the socket is caught as a protocol error. */
#ifndef RFT_GRADER_PROTO_H
#define RFT_GRADER_PROTO_H

#include <stdint.h>

#define GP_MAGIC_INIT 0x49544652u /* "RFTI" parent -> worker, once */
#define GP_MAGIC_REQ 0x51544652u  /* "RFTQ" parent -> worker, one per sample */
#define GP_MAGIC_RESP 0x52544652u /* "RFTR" worker -> parent, one per grade */

/* the worker's socket fd and the environment variable that makes a process
   a worker (read by a constructor in grader_worker.c before main runs) */
#define GP_WORKER_FD 200
#define GP_WORKER_ENV "RFT_GRADER_WORKER"

#define GP_REQ_INIT 0xFFFFFFFFu   /* req_id of the replies to the init record */
#define GP_FLAG_FATAL 1u          /* the worker exits after this reply */

/* init: header, then per grader: gp_init_grader + name + path + config bytes */
typedef struct gp_init {
    uint32_t magic, n_graders;
    uint32_t memory_mb; /* address-space budget on top of the worker's own */
    uint32_t pad;
} gp_init;
typedef struct gp_init_grader {
    uint32_t name_len, path_len, config_len, pad;
} gp_init_grader;

/* request: header, then text (text_len bytes), tokens (n_tokens int32),
   item (item_len bytes of JSON). The worker runs graders g_first.. in order. */
typedef struct gp_req {
    uint32_t magic, req_id, g_first, finished;
    uint64_t text_len, n_tokens, item_len;
} gp_req;

/* response: header, then msg_len bytes of message */
typedef struct gp_resp {
    uint32_t magic, req_id, grader, flags;
    int32_t status, kind; /* GRADE_OK/ABSTAIN/ERROR, GRADE_KIND_* */
    float seconds;
    uint32_t msg_len;
    double score;
} gp_resp;

/* the worker's entry point (grader_worker.c); referenced by the pool so the
   worker code is always linked into a program that can spawn workers */
int grader_worker_main(int fd);

#endif
