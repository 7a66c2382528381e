/* trainer/gguf.h: GGUF (v2, v3) files: a bounds-checked reader (header, all
 * metadata value types, tensor records, alignment, data section) over a
 * read-only mapping or a caller's buffer, and a writer for metadata plus
 * F32/F16/BF16 (or any already-encoded) tensors.
 *
 * Dimensions follow GGUF/ggml order: ne[0] is the innermost (contiguous)
 * dimension, so a PyTorch/numpy [rows, cols] matrix is stored as
 * ne = {cols, rows}. */
#ifndef RFT_GGUF_H
#define RFT_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* metadata value types (gguf.h gguf_type) */
enum {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef struct gguf_kv {
    char *key;             /* NUL-terminated copy */
    uint32_t type;         /* GGUF_TYPE_* */
    uint32_t arr_type;     /* element type when type == ARRAY */
    uint64_t n;            /* array length (1 for scalars) */
    union {
        uint64_t u;        /* unsigned ints, bool */
        int64_t i;         /* signed ints */
        double f;          /* float32 / float64 */
    } v;                   /* scalar value, widened */
    char *str;             /* STRING: NUL-terminated copy (may hold embedded NULs) */
    uint64_t str_len;
    const uint8_t *arr;    /* numeric ARRAY: n packed little-endian elements, inside the file image */
    char **strs;           /* STRING ARRAY: n NUL-terminated copies */
    uint64_t *str_lens;    /* [n] */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    int n_dims;                   /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];    /* ne[0] innermost; unused dims are 1 */
    int type;                     /* GGML_TYPE_* (quant.h) */
    uint64_t offset;              /* from the start of the data section */
    uint64_t n_elems;
    uint64_t nbytes;
    const uint8_t *data;          /* inside the file image */
} gguf_tensor;

typedef struct gguf_file {
    char path[512];               /* name used in error messages */
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;                  /* [n_kv] */
    gguf_tensor *tensors;         /* [n_tensors] */
    uint64_t alignment;
    uint64_t data_offset;         /* start of the data section in the file */
    const uint8_t *base;          /* file image */
    size_t size;
    int mapped;                   /* 1: base is our mmap */
} gguf_file;

/* Maps and parses path. Errors name the file and the key/tensor at fault. */
int gguf_open(gguf_file *f, const char *path, char *err, size_t err_cap);
/* Parses a caller-owned image (kept referenced; must outlive f). */
int gguf_parse(gguf_file *f, const void *buf, size_t size, const char *name, char *err, size_t err_cap);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_get(const gguf_file *f, const char *key);
/* scalar getters: 1 found, 0 absent, -1 present with an unusable type/value (err set) */
int gguf_get_int(const gguf_file *f, const char *key, int64_t *out, char *err, size_t err_cap);
int gguf_get_float(const gguf_file *f, const char *key, double *out, char *err, size_t err_cap);
int gguf_get_bool(const gguf_file *f, const char *key, int *out, char *err, size_t err_cap);
const char *gguf_get_str(const gguf_file *f, const char *key);  /* NULL if absent or not a string */
/* element i of a numeric array as double / int64 (caller checks bounds and type) */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);
size_t gguf_type_size(uint32_t type);      /* bytes of a numeric metadata type, 0 otherwise */
const char *gguf_type_name(uint32_t type);

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* dequantise a tensor into out[t->n_elems] */
int gguf_tensor_to_f32(const gguf_file *f, const gguf_tensor *t, float *out, char *err, size_t err_cap);

/* ---- writer ---- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* metadata setters (keys must be unique; the value is copied) */
void gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_set_f32(gguf_writer *w, const char *key, float v);
void gguf_set_bool(gguf_writer *w, const char *key, int v);
void gguf_set_str(gguf_writer *w, const char *key, const char *s);
/* numeric array of elem_type (packed little-endian values at data) */
void gguf_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
void gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
/* a tensor of ggml type `type`, dims in GGUF order (ne[0] innermost); data is
   referenced (not copied) until gguf_writer_write returns */
int gguf_add_tensor(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, int type, const void *data,
                    char *err, size_t err_cap);
/* writes path (via path.tmp + rename); returns 0 or -1 with err */
int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t err_cap);

#endif
