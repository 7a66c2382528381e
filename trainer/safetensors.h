/* trainer/safetensors.h: the safetensors format (Hugging Face): 8-byte
 * little-endian header length, a JSON header {name: {dtype, shape,
 * data_offsets}, "__metadata__": {...}}, then raw row-major data. A
 * bounds-checked reader over a read-only mapping (F32/F16/BF16 converted to
 * fp32), sharded sets through model.safetensors.index.json, and a writer
 * (single file or shards + index, atomically renamed into place). */
#ifndef RFT_SAFETENSORS_H
#define RFT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_F8_E4M3, ST_F8_E5M2,
       ST_U16, ST_U32, ST_U64, ST_NDTYPES };

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    int dtype;                    /* ST_* */
    int ndim;                     /* 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];   /* row-major, PyTorch order */
    uint64_t n_elems;
    uint64_t nbytes;
    const uint8_t *data;          /* inside the file image */
} st_tensor;

typedef struct st_file {
    char path[512];
    const uint8_t *base;
    size_t size;
    int mapped;
    int n;                        /* tensors */
    st_tensor *t;                 /* [n], in header order */
    char *names;                  /* one buffer for all names */
} st_file;

int st_open(st_file *f, const char *path, char *err, size_t err_cap);
/* parses a caller-owned image (kept referenced) */
int st_parse(st_file *f, const void *buf, size_t size, const char *name, char *err, size_t err_cap);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_dtype_name(int dtype);
size_t st_dtype_size(int dtype);
/* converts an F32/F16/BF16 tensor to out[t->n_elems] */
int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *out, char *err, size_t err_cap);

/* All safetensors of a Hugging Face directory: model.safetensors.index.json
   (its weight_map names the shards), else model.safetensors, else every
   *.safetensors file in the directory (no tensor in two of them). */
typedef struct st_set {
    char dir[512];
    int n_files;
    st_file *files;
} st_set;

int st_set_open(st_set *s, const char *dir, char *err, size_t err_cap);
void st_set_close(st_set *s);
/* tensor by name across the set (NULL if absent); *file gets its file */
const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file);

/* ---- writer ---- */
typedef struct st_wtensor {
    const char *name;
    int dtype;                    /* ST_F32, ST_F16 or ST_BF16 */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;             /* already encoded in dtype */
} st_wtensor;

/* One file with the tensors in the given order; metadata {"format": "pt"}. */
int st_write(const char *path, const st_wtensor *t, int n, char *err, size_t err_cap);
/* dir/model.safetensors, or when the data exceed max_shard_bytes (> 0),
   dir/model-0000i-of-0000N.safetensors + dir/model.safetensors.index.json;
   then removes the other layout's files left by an earlier export */
int st_write_dir(const char *dir, const st_wtensor *t, int n, uint64_t max_shard_bytes, char *err, size_t err_cap);

#endif
