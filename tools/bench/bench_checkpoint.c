/* tools/bench/bench_checkpoint.c: time to save and load an rft checkpoint of
 * the SmolLM2-135M shape (fp32 weights; with AdamW state a training
 * checkpoint is 3x that), including the Fletcher-32 checksums, the fsync and
 * the finiteness checks. Usage: bench_checkpoint [DIR] (default /tmp).
 * Timings include the page cache: the fsync makes the write durable, the
 * read usually comes from memory right after. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "model.h"
#include "optim.h"
#include "util.h"

static double file_mb(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size / 1e6 : 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/bench_ckpt_%ld.h5", dir, (long)getpid());
    model_config c = {.vocab = 49152, .d_model = 576, .n_layer = 30, .n_head = 9, .n_kv_head = 3, .head_dim = 64,
                      .d_ff = 1536, .rope_theta = 100000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 0,
                      .max_seq = 2048};
    backend *be = backend_cpu_create(0);
    model m, m2;
    optim o, o2;
    optim_config oc = {.lr = 1e-5f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .schedule = LR_CONSTANT};
    if (model_create(&m, &c, be, 1, err, sizeof err) || optim_create(&o, &m, &oc, err, sizeof err) ||
        model_create(&m2, &c, be, 1, err, sizeof err) || optim_create(&o2, &m2, &oc, err, sizeof err)) {
        fprintf(stderr, "bench_checkpoint: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1);
    printf("SmolLM2-135M shape: %zu parameters (%.1f MB fp32)\n", m.n_params, m.n_params * 4 / 1e6);

    ckpt_parts none = {0}, train = {.opt = &o};
    const ckpt_parts *parts[2] = {&none, &train};
    const char *what[2] = {"model only", "model + AdamW m, v"};
    for (int k = 0; k < 2; k++) {
        double t0 = now_seconds();
        if (ckpt_save(path, &m, parts[k], err, sizeof err)) {
            fprintf(stderr, "bench_checkpoint: %s\n", err);
            return 1;
        }
        double t1 = now_seconds();
        ckpt_file *f = ckpt_open(path, err, sizeof err);
        int rc = !f || ckpt_load_model(f, &m2, err, sizeof err) || (k == 1 && ckpt_load_optim(f, &o2, err, sizeof err));
        double t2 = now_seconds();
        ckpt_close(f);
        if (rc) {
            fprintf(stderr, "bench_checkpoint: %s\n", err);
            return 1;
        }
        double mb = file_mb(path);
        printf("%-20s file %7.1f MB   save %6.3f s (%6.0f MB/s)   load %6.3f s (%6.0f MB/s)\n", what[k], mb, t1 - t0,
               mb / (t1 - t0), t2 - t1, mb / (t2 - t1));
    }
    unlink(path);
    optim_free(&o);
    optim_free(&o2);
    model_free(&m);
    model_free(&m2);
    be->destroy(be);
    return 0;
}
