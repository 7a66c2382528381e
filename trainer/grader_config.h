/* trainer/grader_config.h: the `graders:` and `reward:` sections of an rft
 * YAML config, turned into grader specs (plugin path, config JSON, limits)
 * and a reward spec. The section parser takes libyaml nodes so the full
 * config parser can call it on its own document. */
#ifndef RFT_GRADER_CONFIG_H
#define RFT_GRADER_CONFIG_H

#include <jansson.h>
#include <yaml.h>

#include "grader.h"
#include "reward.h"

typedef struct grader_config {
    grader_spec *graders; /* [n_graders], in YAML order */
    int n_graders;
    const char **names;   /* [n_graders] graders[g].name */
    reward_spec reward;
    int workers;          /* reward.workers: grader worker processes; 0 = one per core */
} grader_config;

/* Parses the two sections of a loaded document. `graders` must be a mapping;
   `reward` may be NULL (plain sum, on_error mask). Errors read
   "path:line: graders.correct.type: unknown grader type 'x' (...)". */
int grader_config_parse(yaml_document_t *doc, yaml_node_t *graders, yaml_node_t *reward, const char *path,
                        grader_config *out, char *err, size_t err_cap);

/* Loads the YAML file at path and parses its graders/reward sections (other
   top-level keys are left to their own parsers). */
int grader_config_load(const char *path, grader_config *out, char *err, size_t err_cap);

void grader_config_free(grader_config *c);

/* A YAML node as JSON: plain scalars that read as integers or decimals become
   numbers, true/false booleans, null/~/empty null; quoted and block scalars
   stay strings; sequences become arrays, mappings objects. New reference. */
json_t *grader_yaml_to_json(yaml_document_t *doc, yaml_node_t *node);

#endif
