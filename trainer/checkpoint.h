/* trainer/checkpoint.h: rft checkpoints, one HDF5 file (docs/checkpoint.md).
 *
 *   /                      attributes: format = "rft-checkpoint", format_version = 1,
 *                          and every model_config field (vocab ... max_seq)
 *   /model/<HF name>       float32 [out, in] (or [n]) per parameter tensor;
 *                          lm_head.weight absent when tie_embeddings = 1
 *   /optimizer  (optional) attributes: step + optim_config fields;
 *                          /optimizer/m/<HF name>, /optimizer/v/<HF name> float32
 *   /trainer    (optional) attributes: step, epoch, cursor, seed, rng_counter,
 *                          best_valid_reward, best_step, wall_seconds;
 *                          datasets config_text (string), data_order (int32 [n]);
 *                          group scalars/ (one float64 attribute per named scalar)
 *   /tokenizer  (optional) written and read by the tokenizer code through the
 *                          ckpt_tokenizer_save_fn / _load_fn hooks below
 *
 * Writing goes to "<path>.tmp.<pid>", is flushed, fsync'ed and renamed over
 * <path> (then the directory is fsync'ed): a crash or error never leaves a
 * half-written file under <path>, and an existing <path> is untouched on any
 * error. Reading checks everything (format, version, every attribute's type
 * and range, every tensor's presence, dtype, shape and finiteness, unknown
 * tensors) and reports one line naming the file and the tensor or attribute.
 * HDF5 is not thread-safe here: call these from one thread at a time.
 */
#ifndef RFT_CHECKPOINT_H
#define RFT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "model.h"
#include "optim.h"

#define CKPT_FORMAT_NAME "rft-checkpoint"
#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_SCALARS 64

/* A named float64 the trainer wants to carry across a resume without a format
 * change (e.g. an adaptive KL coefficient). Names: [A-Za-z0-9_.-], < 48 chars. */
typedef struct ckpt_scalar {
    char name[48];
    double value;
} ckpt_scalar;

/* The training loop's own state (the /trainer group). Pointers are owned by
 * the caller when saving; ckpt_load_train_state allocates them (free with
 * ckpt_train_state_free). */
typedef struct ckpt_train_state {
    int64_t step;              /* training steps completed */
    int64_t epoch;             /* current epoch (0-based) */
    int64_t cursor;            /* next position in data_order within the epoch */
    uint64_t seed;             /* the run's seed */
    uint64_t rng_counter;      /* next counter of the run's counter-based RNG stream */
    double best_valid_reward;  /* NaN when no validation ran yet */
    int64_t best_step;         /* step of best_valid_reward, -1 when none */
    double wall_seconds;       /* training time accumulated so far */
    char *config_text;         /* the run's YAML config (NUL-terminated), NULL: none */
    int32_t *data_order;       /* [n_order] training-set permutation of the current epoch, NULL: none */
    int64_t n_order;
    int n_scalars;             /* extra named scalars, [0, CKPT_MAX_SCALARS] */
    ckpt_scalar scalars[CKPT_MAX_SCALARS];
} ckpt_train_state;

/* Tokenizer hooks. The checkpoint code creates (on save) or opens (on load)
 * the /tokenizer group and hands its id to these; the tokenizer code owns the
 * layout inside it. Both return 0, or -1 with a message in err (the
 * checkpoint code prefixes the file name). */
typedef int (*ckpt_tokenizer_save_fn)(hid_t group, const void *tok, char *err, size_t err_cap);
typedef int (*ckpt_tokenizer_load_fn)(hid_t group, void *tok, char *err, size_t err_cap);

/* For hooks writing into a checkpoint group: a rank-1 or rank-2 dataset
 * stored like every checkpoint dataset (chunked with a Fletcher-32 checksum,
 * verified by HDF5 on every read, so damage is an error, not silently
 * different data). 0, or -1 on an HDF5 error. */
int ckpt_write_dataset(hid_t group, const char *name, hid_t file_type, hid_t mem_type, int ndim, const int64_t *shape,
                       const void *data);

/* Optional parts of a checkpoint; a NULL pointer leaves the group out. */
typedef struct ckpt_parts {
    const optim *opt;                      /* -> /optimizer */
    const ckpt_train_state *train;         /* -> /trainer */
    const void *tokenizer;                 /* -> /tokenizer via tokenizer_save */
    ckpt_tokenizer_save_fn tokenizer_save;
} ckpt_parts;

/* Writes m (and the optional parts; parts may be NULL) to path atomically.
 * Refuses non-finite parameters or optimizer state (naming the tensor), so a
 * diverged run never overwrites its last good checkpoint. 0, or -1 + err. */
int ckpt_save(const char *path, const model *m, const ckpt_parts *parts, char *err, size_t err_cap);

/* ---- reading ---- */

typedef struct ckpt_file ckpt_file;    /* an open, format-checked checkpoint */

/* Opens path read-only and checks the root: HDF5 signature, format name,
 * format_version, every config attribute (type and range). NULL + err. */
ckpt_file *ckpt_open(const char *path, char *err, size_t err_cap);
void ckpt_close(ckpt_file *f);

const char *ckpt_path(const ckpt_file *f);
const model_config *ckpt_config(const ckpt_file *f);
int ckpt_has_optim(const ckpt_file *f);
int ckpt_has_train_state(const ckpt_file *f);
int ckpt_has_tokenizer(const ckpt_file *f);
hid_t ckpt_hid(const ckpt_file *f);    /* the HDF5 file id, for read-only walks (inspect) */

/* Loads /model into m, which must have been created with the file's config
 * (else an error names the differing field; max_seq alone may differ). Checks every tensor of
 * m's table (present, float32, shape, finite) and rejects tensors in /model
 * that the model does not have. All metadata is checked before any parameter
 * is written; a read error after that leaves m's parameters unspecified. */
int ckpt_load_model(ckpt_file *f, model *m, char *err, size_t err_cap);

/* The optim_config stored in /optimizer (error if the group is absent). */
int ckpt_read_optim_config(ckpt_file *f, optim_config *cfg, char *err, size_t err_cap);

/* Loads step, m and v from /optimizer into o (created over a model with the
 * file's config). o->cfg is left as the caller set it (the resumed run's
 * config wins; ckpt_read_optim_config gives the stored one). */
int ckpt_load_optim(ckpt_file *f, optim *o, char *err, size_t err_cap);

/* The checks of ckpt_load_model / ckpt_load_optim (presence, dtype, shape,
 * no unknown tensors, values read and checked) without storing anything, so
 * no optimizer needs to be allocated (inspect). ckpt_check_optim also
 * validates the attributes and returns the stored step. */
int ckpt_check_model(ckpt_file *f, const model *m, char *err, size_t err_cap);
int ckpt_check_optim(ckpt_file *f, const model *m, int *step, char *err, size_t err_cap);

/* Fills *ts from /trainer (allocating config_text and data_order). */
int ckpt_load_train_state(ckpt_file *f, ckpt_train_state *ts, char *err, size_t err_cap);
void ckpt_train_state_free(ckpt_train_state *ts);

/* Opens /tokenizer and calls load(group, tok). Error if absent. */
int ckpt_load_tokenizer(ckpt_file *f, ckpt_tokenizer_load_fn load, void *tok, char *err, size_t err_cap);

/* Convenience: open, copy the config, close. */
int ckpt_read_config(const char *path, model_config *cfg, char *err, size_t err_cap);

/* 1 if the file at path starts with the HDF5 signature, 0 if not (or unreadable). */
int ckpt_is_hdf5(const char *path);

/* Checks a config's fields for absurd values (the limits the reader applies);
 * names the field in err. */
int ckpt_check_config(const model_config *cfg, char *err, size_t err_cap);

#endif
