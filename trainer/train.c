/* trainer/train.c: the training loop (see train.h and DESIGN.md "Training
 * loop"). One step: take batch_size prompts in seeded epoch order, sample
 * group_size completions each, grade them, combine rewards, compute
 * advantages, then ppo_epochs x mini_batches clipped updates over packed
 * micro-batches (old log-probs recomputed before the first update when more
 * than one update is made, reference log-probs from a frozen copy of the
 * initial weights when kl_beta > 0). SFT runs the same loop on answers.
 * Every piece of randomness is keyed by (seed, epoch, row, sample), so a
 * resumed run repeats the uninterrupted one bit for bit.
 *
 * Data-parallel ranks (comm.h): every rank takes the same prompts, generates
 * and grades a share of them, and receives all completions and grades, so
 * rewards, advantages and metrics are computed identically everywhere. Each
 * mini-batch's sequences are split into contiguous token-balanced shares;
 * a rank runs the passes of its share, and the gradients and the loss
 * statistics are summed across ranks before every update (the loss is
 * normalised by the whole mini-batch), so W ranks compute the update one
 * rank would, up to the order of floating-point sums. Rank 0 writes the
 * files. */
#define _GNU_SOURCE
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "chat_template.h"
#include "comm.h"
#include "convert.h"
#include "dataset.h"
#include "evaluate.h"
#include "grader.h"
#include "model.h"
#include "optim.h"
#include "pg.h"
#include "reward.h"
#include "rollout.h"
#include "rollout_grade.h"
#include "tokenizer_h5.h"
#include "util.h"
#include "../kernels/cpu/cpu_setup.h"

/* ---- signals: the first SIGINT/SIGTERM ends the run after the current step, another one at once. In a
   rank of `rft train --gpus` (RFT_RANK set by the launcher) a repeat within 2 s is the same request
   arriving twice: the rank gets a terminal's Ctrl-C (or a signal to its process group, or a batch
   system's) directly and once more from the launcher. The handler runs with both signals blocked. ---- */
static volatile sig_atomic_t g_stop = 0;
static double g_repeat_s;         /* set before the handler is installed */
static struct timespec g_stop_at; /* when g_stop was set */
static void on_signal(int sig) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe */
    if (g_stop) {
        if ((now.tv_sec - g_stop_at.tv_sec) + (now.tv_nsec - g_stop_at.tv_nsec) * 1e-9 >= g_repeat_s) _exit(128 + sig);
        return;
    }
    g_stop_at = now;
    g_stop = sig;
}

/* one sequence of a pass: prompt ++ completion; per-token arrays over the completion */
typedef struct tseq {
    const int32_t *prompt;
    int np;
    const int32_t *comp;
    int nc;
    float *logp, *old, *ref, *ent, *w, *went; /* [nc] each (old/ref may be NULL) */
    double adv;
    int keep;
} tseq;

typedef struct run {
    rft_config *cfg;
    backend *be;
    comm *cm;                 /* the ranks of the run (one when not data-parallel) */
    int lead;                 /* rank 0: writes logs, samples and checkpoints, prints progress */
    model m;
    int have_model;
    tokenizer *tok;
    optim opt;
    int have_opt;
    rollout_engine ro;
    int have_ro;
    grader_runner *gr;
    dataset train, valid;
    int have_valid;
    float *ref_params;
    int32_t *order;           /* [train.n] current epoch permutation */
    ckpt_train_state st;
    int32_t stop[8];                 /* storage of rcfg */
    const char *stops[CONFIG_MAX_STOP];
    rollout_config rcfg;             /* training rollouts */
    char *config_text;
    int max_tokens;           /* per forward/backward micro-batch */
    /* micro-batch scratch (host) */
    int32_t *b_tok, *b_tgt, *b_cu;
    float *b_logp, *b_ent, *b_w, *b_went;
    FILE *metrics, *samples;
    int tty;
    double valid_start, valid_last;
    int bad_streak;
    long total_steps;
} run;

/* a metric value: JSON null when not finite (jansson's json_real(NaN) is NULL,
   and setting NULL would silently drop the key from the record) */
static json_t *json_num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

enum { PASS_OLD, PASS_REF, PASS_TRAIN, PASS_SFT, PASS_EVAL_NLL };

/* This rank's share [*a, *z) of seqs[a0, z0): contiguous, split where the
   running token count crosses r/W of the total, so the ranks' passes are
   about equally long. */
static void rank_share(const run *R, const tseq *s, int a0, int z0, int *a, int *z) {
    int W = R->cm->size, r = R->cm->rank;
    *a = a0, *z = z0;
    if (W == 1) return;
    long tot = 0, run = 0;
    for (int k = a0; k < z0; k++) tot += s[k].np + s[k].nc;
    int lo = -1, hi = -1;
    for (int k = a0; k <= z0; k++) {
        if (lo < 0 && run * W >= tot * r) lo = k;
        if (hi < 0 && run * W >= tot * (r + 1)) hi = k;
        if (k < z0) run += s[k].np + s[k].nc;
    }
    *a = lo < 0 ? z0 : lo;
    *z = r == W - 1 || hi < 0 ? z0 : hi;
}

/* The loss of a training micro-batch, fed by model_forward_backward one
   LM-head chunk at a time (tokens [t0, t0+n) of the packed batch): each
   completion token's log-prob (and entropy) is stored, its loss terms
   summed in token order and its weights returned, as pg_loss / pg_sft_loss
   over the whole micro-batch would. */
typedef struct pass_loss {
    run *R;
    tseq *seqs;
    int n, mode;
    const pg_params *pp;
    long tokens;         /* the aggregation's normalisers */
    int n_kept;
    pg_sums sums;        /* PASS_TRAIN */
    double sft_loss;     /* PASS_SFT */
    double *ent_sum;
} pass_loss;

static int pass_loss_fn(void *ctx, int t0, int n, const float *logp, const float *ent, float *w, float *went) {
    pass_loss *L = ctx;
    memset(w, 0, (size_t)n * sizeof(float));
    for (int k = 0; k < L->n; k++) {
        tseq *s = &L->seqs[k];
        int c0 = L->R->b_cu[k] + s->np - 1; /* the position that predicts completion token 0 */
        int lo = c0 > t0 ? c0 : t0, hi = c0 + s->nc < t0 + n ? c0 + s->nc : t0 + n;
        if (lo >= hi) continue;
        int i0 = lo - c0, i1 = hi - c0, m = hi - lo;
        memcpy(s->logp + i0, logp + (lo - t0), (size_t)m * sizeof(float));
        if (L->mode == PASS_TRAIN && s->ent) memcpy(s->ent + i0, ent + (lo - t0), (size_t)m * sizeof(float));
        if (L->ent_sum)
            for (int t = lo; t < hi; t++) *L->ent_sum += ent[t - t0];
        pg_seq ps = {.n = s->nc, .logp = s->logp, .old = s->old, .ref = s->ref, .adv = s->adv, .keep = s->keep};
        if (L->mode == PASS_SFT) {
            pg_sft_part(&ps, L->tokens, i0, i1, s->w, &L->sft_loss);
        } else if (s->keep) {
            pg_loss_part(L->pp, &ps, pg_token_weight(L->pp, &ps, L->tokens, L->n_kept), i0, i1, s->w, s->went,
                         &L->sums);
            memcpy(went + (lo - t0), s->went + i0, (size_t)m * sizeof(float));
        } else {
            continue; /* no gradient */
        }
        memcpy(w + (lo - t0), s->w + i0, (size_t)m * sizeof(float));
    }
    return 0;
}

/* Forward (and for PASS_TRAIN / PASS_SFT the loss and backward) over seqs in
 * micro-batches of at most R->max_tokens tokens. pp, norm_* give the
 * aggregation of the mini-batch; acc/loss accumulate statistics. */
static int run_passes(run *R, tseq *seqs, int n, int mode, const pg_params *pp, pg_stats *acc, double *loss,
                      double *ent_sum, char *err, size_t cap) {
    model *m = &R->m;
    int i = 0;
    while (i < n) {
        int T = 0, B = 0, j = i;
        R->b_cu[0] = 0;
        while (j < n && T + seqs[j].np + seqs[j].nc - 1 <= R->max_tokens) {
            tseq *s = &seqs[j];
            int L = s->np + s->nc - 1;
            for (int t = 0; t < L; t++) {
                R->b_tok[T + t] = t < s->np ? s->prompt[t] : s->comp[t - s->np];
                R->b_tgt[T + t] = t >= s->np - 1 ? s->comp[t - s->np + 1] : -1;
            }
            T += L;
            R->b_cu[++B] = T;
            j++;
        }
        if (j == i) return errf(err, cap, "a sequence of %d tokens exceeds train.max_tokens_per_pass (%d)",
                                seqs[i].np + seqs[i].nc - 1, R->max_tokens);
        model_batch mb = {.T = T, .n_seq = B, .tokens = R->b_tok, .targets = R->b_tgt, .cu_seqlens = R->b_cu};
        /* training: the LM head's forward and backward in one pass, unless the
           loss needs a whole sequence's log-probs first (gspo's ratio) */
        if (mode == PASS_SFT || (mode == PASS_TRAIN && pp->algo != ALGO_GSPO)) {
            /* the aggregation's normalisers: the whole mini-batch's, which step_rl and step_sft set */
            pass_loss L = {.R = R, .seqs = seqs + i, .n = j - i, .mode = mode, .pp = pp,
                           .ent_sum = ent_sum, .tokens = pp->norm_tokens, .n_kept = pp->norm_seqs};
            if (model_forward_backward(m, &mb, pass_loss_fn, &L, mode == PASS_TRAIN && pp->entropy_coef != 0, err,
                                       cap))
                return -1;
            if (mode == PASS_SFT) {
                *loss += L.sft_loss;
            } else {
                pg_stats st;
                pg_stats_from(&L.sums, &st);
                *loss += st.loss;
                acc->kl += st.kl * st.tokens;
                acc->clip_low += st.clip_low * st.tokens;
                acc->clip_high += st.clip_high * st.tokens;
                acc->ratio_mean += st.ratio_mean * st.tokens;
                acc->tokens += st.tokens;
            }
            i = j;
            continue;
        }
        if (model_forward(m, &mb, R->b_logp, R->b_ent, err, cap)) return -1;
        for (int k = i; k < j; k++) {
            tseq *s = &seqs[k];
            const float *lp = R->b_logp + R->b_cu[k - i] + s->np - 1, *en = R->b_ent + R->b_cu[k - i] + s->np - 1;
            float *dst = mode == PASS_OLD ? s->old : mode == PASS_REF ? s->ref : s->logp;
            if (dst) memcpy(dst, lp, s->nc * sizeof(float));
            if (mode == PASS_TRAIN && s->ent) memcpy(s->ent, en, s->nc * sizeof(float));
            if (ent_sum && (mode == PASS_TRAIN || mode == PASS_SFT))
                for (int t = 0; t < s->nc; t++) *ent_sum += en[t];
            if (mode == PASS_EVAL_NLL)
                for (int t = 0; t < s->nc; t++) *loss -= lp[t];
        }
        if (mode == PASS_TRAIN || mode == PASS_SFT) {
            int nb = j - i;
            pg_seq *ps = calloc(nb, sizeof *ps);
            float **w = calloc(nb, sizeof *w), **we = calloc(nb, sizeof *we);
            if (!ps || !w || !we) {
                free(ps), free(w), free(we);
                return errf(err, cap, "out of memory");
            }
            for (int k = 0; k < nb; k++) {
                tseq *s = &seqs[i + k];
                ps[k] = (pg_seq){.n = s->nc, .logp = s->logp, .old = s->old, .ref = s->ref, .adv = s->adv, .keep = s->keep};
                w[k] = s->w;
                we[k] = s->went;
            }
            if (mode == PASS_SFT) {
                *loss += pg_sft_loss(ps, nb, pp->norm_tokens, w);
            } else {
                pg_stats st;
                pg_loss(pp, ps, nb, w, we, &st);
                *loss += st.loss;
                acc->kl += st.kl * st.tokens;
                acc->clip_low += st.clip_low * st.tokens;
                acc->clip_high += st.clip_high * st.tokens;
                acc->ratio_mean += st.ratio_mean * st.tokens;
                acc->tokens += st.tokens;
            }
            free(ps), free(w), free(we);
            /* per-token weights of the packed batch: zero on prompt positions */
            memset(R->b_w, 0, T * sizeof(float));
            memset(R->b_went, 0, T * sizeof(float));
            for (int k = i; k < j; k++) {
                tseq *s = &seqs[k];
                memcpy(R->b_w + R->b_cu[k - i] + s->np - 1, s->w, s->nc * sizeof(float));
                if (mode == PASS_TRAIN) memcpy(R->b_went + R->b_cu[k - i] + s->np - 1, s->went, s->nc * sizeof(float));
            }
            int use_went = mode == PASS_TRAIN && pp->entropy_coef != 0;
            if (model_backward(m, &mb, R->b_w, use_went ? R->b_went : NULL, err, cap)) return -1;
        }
        i = j;
    }
    return 0;
}

/* ---- files ---- */

static int mkdir_p(const char *path, char *err, size_t cap) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST) return errf(err, cap, "%s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) && errno != EEXIST) return errf(err, cap, "%s: %s", tmp, strerror(errno));
    return 0;
}

/* step numbers of out_dir/checkpoints/step-NNNNNN.h5, ascending; returns count */
static int list_checkpoints(const char *out_dir, long *steps, int cap) {
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/checkpoints", out_dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long s;
        char tail[8];
        if (sscanf(e->d_name, "step-%ld.h5%7s", &s, tail) == 1 && strlen(e->d_name) == 14) steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            long t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

static void ckpt_name(const run *R, long step, char *out, size_t cap) {
    snprintf(out, cap, "%s/checkpoints/step-%06ld.h5", R->cfg->train.out_dir, step);
}

static int save_checkpoint(run *R, const char *path, int with_optim, char *err, size_t cap) {
    if (!R->lead) return 0; /* every rank holds the same weights and state */
    R->st.config_text = R->config_text;
    R->st.data_order = R->order;
    R->st.n_order = R->train.n;
    ckpt_parts parts = {.opt = with_optim && R->have_opt ? &R->opt : NULL, .train = &R->st, .tokenizer = R->tok,
                        .tokenizer_save = tokenizer_h5_save};
    int rc = ckpt_save(path, &R->m, &parts, err, cap);
    R->st.config_text = NULL;
    R->st.data_order = NULL;
    return rc;
}

/* Prints the settings in which the configuration of a resumed run differs
   from the one stored in its checkpoint (both rendered by config_render, so
   their lines correspond): the bitwise-resume promise holds only without
   such differences (max_steps aside, with a constant schedule). */
static void note_config_changes(const char *old_text, const char *new_text) {
    char *o = strdup(old_text ? old_text : ""), *n = strdup(new_text ? new_text : "");
    if (!o || !n) {
        free(o), free(n);
        return;
    }
    char sec[64] = "", *so = NULL, *sn = NULL;
    int shown = 0;
    char *lo = strtok_r(o, "\n", &so), *ln = strtok_r(n, "\n", &sn);
    for (; lo && ln; lo = strtok_r(NULL, "\n", &so), ln = strtok_r(NULL, "\n", &sn)) {
        if (ln[0] != ' ' && ln[0] != '#') snprintf(sec, sizeof sec, "%.*s", (int)strcspn(ln, ":"), ln);
        if (ln[0] == '#' || !strcmp(lo, ln)) continue;
        const char *ko = strchr(lo, ':'), *kn = strchr(ln, ':');
        int same_key = ko && kn && ko - lo == kn - ln && !strncmp(lo, ln, kn - ln);
        if (!same_key) {
            fprintf(stderr, "rft train: note: the checkpoint was written with a different configuration layout\n");
            break;
        }
        if (shown++ < 12)
            fprintf(stderr, "rft train: note: resuming with %s%s%.*s changed:%s ->%s\n", ln[0] == ' ' ? sec : "",
                    ln[0] == ' ' ? "." : "", (int)(kn - ln - (ln[0] == ' ' ? 2 : 0)), ln + (ln[0] == ' ' ? 2 : 0),
                    ko + 1, kn + 1);
    }
    free(o), free(n);
}

/* Removes step-*.h5.tmp.PID files left by a writer that died (its PID no
   longer runs): what a crash during ckpt_save leaves behind. */
static void remove_stale_tmp(const char *out_dir) {
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/checkpoints", out_dir);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".h5.tmp.");
        long pid = t ? strtol(t + 8, NULL, 10) : 0;
        if (strncmp(e->d_name, "step-", 5) || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* still running (or not ours to judge) */
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Keeps the newest keep_checkpoints step checkpoints. */
static void prune_checkpoints(run *R) {
    if (!R->lead) return;
    long steps[4096];
    int n = list_checkpoints(R->cfg->train.out_dir, steps, 4096);
    for (int i = 0; i + R->cfg->train.keep_checkpoints < n; i++) {
        char p[1200];
        ckpt_name(R, steps[i], p, sizeof p);
        unlink(p);
    }
}

/* Rewrites a JSONL log keeping the records with "step" <= step (resume). */
static int truncate_log(const char *path, long step, char *err, size_t cap) {
    size_t len;
    char e2[256];
    char *text = read_file(path, &len, e2, sizeof e2);
    if (!text) return 0; /* no log yet */
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(text);
        return errf(err, cap, "%s: %s", tmp, strerror(errno));
    }
    char *line = text;
    while (*line) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        json_t *o = json_loadb(line, n, 0, NULL);
        json_t *s = o ? json_object_get(o, "step") : NULL;
        if (s && json_integer_value(s) <= step) {
            fwrite(line, 1, n, f);
            fputc('\n', f);
        }
        json_decref(o);
        line = nl ? nl + 1 : line + n;
    }
    free(text);
    if (fclose(f) || rename(tmp, path)) return errf(err, cap, "%s: %s", path, strerror(errno));
    return 0;
}

/* ---- evaluation ---- */

static int evaluate(run *R, json_t *rec, char *err, size_t cap) {
    if (!R->have_valid) return 0;
    rft_config *c = R->cfg;
    double t0 = now_seconds();
    if (c->algorithm.name == ALGO_SFT) {
        int n = c->train.eval_max_rows > 0 && c->train.eval_max_rows < R->valid.n ? c->train.eval_max_rows : R->valid.n;
        tseq *s = calloc(n, sizeof *s);
        long toks = 0;
        int k = 0;
        for (int i = 0; i < n; i++) {
            data_row *r = &R->valid.rows[i];
            if (!r->answer) continue; /* valid_loss over the rows that carry an answer */
            s[k++] = (tseq){.prompt = r->prompt, .np = r->n_prompt, .comp = r->answer, .nc = r->n_answer};
            toks += r->n_answer;
        }
        double nll = 0;
        int a, z;
        rank_share(R, s, 0, k, &a, &z);
        int rc = run_passes(R, s + a, z - a, PASS_EVAL_NLL, NULL, NULL, &nll, NULL, err, cap);
        if (!rc) rc = comm_sum(R->cm, &nll, 1, err, cap);
        free(s);
        if (rc) return -1;
        if (k) json_object_set_new(rec, "valid_loss", json_num(nll / toks));
    }
    if (R->gr) {
        eval_result er;
        if (eval_run(R->cm, &R->ro, R->gr, c, &R->valid, c->train.eval_max_rows, c->train.eval_samples, c->train.seed, &er, err,
                     cap))
            return -1;
        json_object_set_new(rec, "valid_reward_mean", json_num(er.reward_mean));
        for (int g = 0; g < er.n_graders; g++) {
            char k[160];
            snprintf(k, sizeof k, "valid/%s/mean", c->graders.names[g]);
            json_object_set_new(rec, k, json_num(er.grader_mean[g]));
        }
        json_object_set_new(rec, "valid/pass@1", json_num(er.pass1));
        if (er.k > 1) {
            char k[64];
            snprintf(k, sizeof k, "valid/pass@%d", er.k);
            json_object_set_new(rec, k, json_num(er.passk));
        }
        json_object_set_new(rec, "valid/completions/mean_length", json_num(er.mean_length));
        R->valid_last = er.reward_mean;
        if (isnan(R->valid_start)) R->valid_start = er.reward_mean;
        if (isfinite(er.reward_mean) && (isnan(R->st.best_valid_reward) || er.reward_mean > R->st.best_valid_reward)) {
            R->st.best_valid_reward = er.reward_mean;
            R->st.best_step = R->st.step;
            char p[1200];
            snprintf(p, sizeof p, "%s/best.h5", c->train.out_dir);
            if (save_checkpoint(R, p, 0, err, cap)) return -1;
        }
    }
    json_object_set_new(rec, "timing/eval", json_num(now_seconds() - t0));
    return 0;
}

static void log_record(run *R, json_t *rec) {
    if (!R->metrics) return; /* not rank 0 */
    char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (s) {
        fputs(s, R->metrics);
        fputc('\n', R->metrics);
        fflush(R->metrics);
        free(s);
    }
}

static void progress(run *R, json_t *rec, double elapsed) {
    if (!R->lead) return;
    long step = R->st.step;
    double r = json_real_value(json_object_get(rec, "reward"));
    json_t *v = json_object_get(rec, "valid_reward_mean");
    json_t *l = json_object_get(rec, "loss");
    double eta = step > 0 ? elapsed / step * (R->total_steps - step) : 0;
    char line[512];
    int n = snprintf(line, sizeof line, "step %ld/%ld", step, R->total_steps);
    if (R->cfg->algorithm.name == ALGO_SFT && l) n += snprintf(line + n, sizeof line - n, " | loss %.4f", json_real_value(l));
    else n += snprintf(line + n, sizeof line - n, " | reward %.3f", r);
    if (json_is_number(v)) n += snprintf(line + n, sizeof line - n, " | valid %.3f", json_real_value(v)); /* null: all masked */
    n += snprintf(line + n, sizeof line - n, " | %.0f tok/s | ETA %dm%02ds", json_real_value(json_object_get(rec, "tokens_per_s")),
                  (int)eta / 60, (int)eta % 60);
    if (R->tty) fprintf(stderr, "\r%-100s", line);
    else fprintf(stderr, "%s\n", line);
}

/* ---- one step ---- */

static int next_row(run *R) {
    if (R->st.cursor >= R->train.n) {
        R->st.epoch++;
        R->st.cursor = 0;
        dataset_epoch_order(R->train.n, R->cfg->train.seed, (int)R->st.epoch, R->order);
    }
    return R->order[R->st.cursor++];
}

/* a hash of the weights (to compare ranks), tensor by tensor through a host buffer */
static uint64_t params_hash(run *R) {
    size_t mx = 0;
    for (int i = 0; i < R->m.n_tensors; i++) mx = R->m.tensors[i].numel > mx ? R->m.tensors[i].numel : mx;
    uint32_t *h = malloc((mx ? mx : 1) * sizeof(float)); /* the floats' bits */
    uint64_t x = 0xCBF29CE484222325ull;
    if (!h) return 0;
    for (int i = 0; i < R->m.n_tensors; i++) {
        const model_tensor *e = &R->m.tensors[i];
        R->be->copy_d2h(R->be, h, R->m.params + e->offset, e->numel * sizeof(float));
        R->be->sync(R->be);
        for (size_t k = 0; k < e->numel; k++) x = (x ^ h[k]) * 0x100000001B3ull;
    }
    free(h);
    return x;
}

/* With several ranks: after a checkpoint save (rank 0's result in
   save_failed) and at the start, every rank must run rank 0's configuration
   and hold its weights and data position. They differ when the ranks were
   given other settings, resumed from different checkpoints (train.out_dir
   not shared) or drifted apart. */
static int ranks_agree(run *R, int save_failed, char *err, size_t cap) {
    if (R->cm->size == 1) return save_failed ? -1 : 0;
    uint64_t cfg_hash = 0xCBF29CE484222325ull;
    for (const char *q = R->config_text; q && *q; q++) cfg_hash = (cfg_hash ^ (unsigned char)*q) * 0x100000001B3ull;
    uint64_t mine[6] = {params_hash(R), (uint64_t)R->st.step, (uint64_t)R->st.epoch, (uint64_t)R->st.cursor,
                        cfg_hash, (uint64_t)save_failed};
    char *all = NULL;
    size_t *counts = calloc(R->cm->size, sizeof *counts);
    int rc = !counts ? errf(err, cap, "out of memory") : comm_gather(R->cm, mine, sizeof mine, &all, counts, err, cap);
    if (rc) {
        free(counts);
        return -1;
    }
    const uint64_t *v = (const uint64_t *)all;
    for (int r = 0; r < R->cm->size && !rc; r++) {
        const uint64_t *x = v + 6 * r;
        if (counts[r] != sizeof mine) rc = errf(err, cap, "rank %d: a malformed state message", r);
        else if (x[5]) rc = save_failed ? -1 /* its own error is in err */
                                        : errf(err, cap, "rank %d could not write the checkpoint", r);
        else if (x[4] != v[4])
            rc = errf(err, cap, "rank %d runs another configuration than rank 0 (every rank must be given the same "
                      "file and --set's)", r);
        else if (memcmp(x, v, 4 * sizeof *x))
            rc = errf(err, cap, "rank %d holds other weights or another data position than rank 0 (step %llu vs %llu): "
                      "the ranks must start from the same checkpoint (a train.out_dir they share)", r,
                      (unsigned long long)x[1], (unsigned long long)v[1]);
    }
    free(all), free(counts);
    return rc;
}

/* sums the ranks' gradients, then one AdamW step; 1 when the gradient is not
   finite (the update is dropped), -1 on a transport failure */
static int optimizer_update(run *R, double *gnorm_out, char *err, size_t cap) {
    if (comm_sum_device(R->cm, R->m.grads, R->m.n_params, err, cap)) return -1;
    double gn = optim_step(&R->opt);
    *gnorm_out = gn;
    if (!isfinite(gn)) {
        model_zero_grads(&R->m);
        return 1;
    }
    return 0;
}

static int step_sft(run *R, json_t *rec, char *err, size_t cap) {
    rft_config *c = R->cfg;
    int B = c->train.batch_size < R->train.n ? c->train.batch_size : R->train.n;
    tseq *s = calloc(B, sizeof *s);
    float *buf = NULL;
    long toks = 0;
    for (int b = 0; b < B; b++) {
        data_row *r = &R->train.rows[next_row(R)];
        s[b] = (tseq){.prompt = r->prompt, .np = r->n_prompt, .comp = r->answer, .nc = r->n_answer, .keep = 1};
        toks += r->n_answer;
    }
    buf = calloc((size_t)toks * 2, sizeof(float));
    float *p = buf;
    for (int b = 0; b < B; b++) s[b].logp = p, p += s[b].nc, s[b].w = p, p += s[b].nc;
    double t0 = now_seconds(), loss = 0, ent = 0;
    model_zero_grads(&R->m);
    pg_params pp = {.norm_tokens = toks};
    int a, z;
    rank_share(R, s, 0, B, &a, &z);
    int rc = run_passes(R, s + a, z - a, PASS_SFT, &pp, NULL, &loss, &ent, err, cap);
    double sums[2] = {loss, ent};
    if (!rc) rc = comm_sum(R->cm, sums, 2, err, cap);
    loss = sums[0], ent = sums[1];
    double gn = 0;
    int bad = rc ? 0 : optimizer_update(R, &gn, err, cap);
    if (bad < 0) rc = -1, bad = 0;
    double dt = now_seconds() - t0;
    free(s), free(buf);
    if (rc) return -1;
    json_object_set_new(rec, "loss", json_num(loss));
    json_object_set_new(rec, "entropy", json_num(ent / toks));
    json_object_set_new(rec, "grad_norm", json_num(gn));
    json_object_set_new(rec, "learning_rate", json_num(optim_lr(&R->opt.cfg, R->opt.step > 0 ? R->opt.step : 1)));
    json_object_set_new(rec, "timing/training", json_num(dt));
    json_object_set_new(rec, "tokens_per_s", json_num(toks / dt));
    return bad || !isfinite(loss);
}

static int step_rl(run *R, json_t *rec, char *err, size_t cap) {
    rft_config *c = R->cfg;
    int B = c->train.batch_size < R->train.n ? c->train.batch_size : R->train.n;
    int G = c->sampling.group_size, N = B * G, NG = c->graders.n_graders;
    int rc = -1, bad = 0;
    int32_t *rows = calloc(B, sizeof *rows);
    rollout_prompt *pr = calloc(B, sizeof *pr);
    completion *cs = calloc(N, sizeof *cs);
    json_t **items = calloc(N, sizeof *items), **prow = calloc(B, sizeof *prow); /* per completion, per prompt */
    grade_result *gres = calloc((size_t)N * NG, sizeof *gres);
    double *reward = calloc(N, sizeof *reward), *adv = calloc(N, sizeof *adv);
    unsigned char *valid = calloc(N, 1), *keep = calloc(N, 1);
    tseq *s = calloc(N, sizeof *s);
    float *buf = NULL;
    if (!rows || !pr || !cs || !items || !prow || !gres || !reward || !adv || !valid || !keep || !s) {
        errf(err, cap, "out of memory");
        goto done;
    }
    /* 1. prompts */
    for (int b = 0; b < B; b++) {
        rows[b] = next_row(R);
        data_row *r = &R->train.rows[rows[b]];
        pr[b] = (rollout_prompt){.ids = r->prompt, .n = r->n_prompt, .id = ((uint64_t)R->st.epoch << 32) | (uint64_t)rows[b]};
    }
    /* 2. rollouts, 3. grading: each completion is graded as soon as it
       finishes, while the rest are still being generated */
    double t0 = now_seconds();
    for (int b = 0; b < B; b++) prow[b] = R->train.rows[rows[b]].json;
    rollout_grade_times tg;
    if (rollout_grade_shared(R->cm, &R->ro, R->gr, NG, pr, B, G, &R->rcfg, prow, cs, gres, &tg, err, cap)) goto done;
    long gen_tokens = 0, clipped = 0;
    for (int i = 0; i < N; i++) {
        items[i] = R->train.rows[rows[i / G]].json;
        gen_tokens += cs[i].n_tokens;
        clipped += cs[i].finish == ROLLOUT_LENGTH;
    }
    int n_ferr = 0;
    for (int i = 0; i < N; i++) {
        int ferr = 0;
        char why[256];
        valid[i] = reward_combine(&c->graders.reward, &gres[(size_t)i * NG], &reward[i], &ferr, why, sizeof why) == REWARD_OK;
        n_ferr += ferr;
        if (valid[i])
            reward[i] += pg_overlong_penalty(cs[i].n_tokens, c->sampling.max_new_tokens, c->algorithm.overlong_buffer,
                                             c->algorithm.overlong_penalty);
    }
    if (reward_check_errors(&c->graders.reward, gres, N, n_ferr, err, cap)) {
        rc = -2; /* the run's error policy stops it */
        goto done;
    }
    double t2 = now_seconds();
    /* 4. advantages */
    pg_params pp = {.algo = c->algorithm.name, .scale = c->algorithm.scale_rewards, .agg = c->algorithm.loss_agg,
                    .eps_low = c->algorithm.eps_low, .eps_high = c->algorithm.eps_high, .kl_beta = c->algorithm.kl_beta,
                    .entropy_coef = c->algorithm.entropy_coef, .max_new_tokens = c->sampling.max_new_tokens};
    int zero_std = pg_advantages(&pp, c->algorithm.dynamic_sampling, reward, valid, B, G, adv, keep);
    /* 5. policy update over the kept completions */
    int K = 0;
    long ktoks = 0;
    for (int i = 0; i < N; i++) {
        if (c->algorithm.mask_truncated && cs[i].finish == ROLLOUT_LENGTH) keep[i] = 0;
        if (!keep[i]) continue;
        data_row *r = &R->train.rows[rows[i / G]];
        s[K++] = (tseq){.prompt = r->prompt, .np = r->n_prompt, .comp = cs[i].tokens, .nc = cs[i].n_tokens,
                        .adv = adv[i], .keep = 1};
        ktoks += cs[i].n_tokens;
    }
    int need_old = c->algorithm.ppo_epochs > 1 || c->algorithm.mini_batches > 1;
    int need_ref = c->algorithm.kl_beta > 0;
    buf = calloc((size_t)ktoks * 6 + 1, sizeof(float));
    if (!buf) {
        errf(err, cap, "out of memory");
        goto done;
    }
    float *p = buf;
    for (int k = 0; k < K; k++) {
        int n = s[k].nc;
        s[k].logp = p, p += n;
        s[k].ent = p, p += n;
        s[k].w = p, p += n;
        s[k].went = p, p += n;
        if (need_old) s[k].old = p;
        p += n;
        if (need_ref) s[k].ref = p;
        p += n;
    }
    pg_stats acc = {0};
    double loss = 0, ent = 0, gn_sum = 0;
    int n_updates = 0;
    if (K > 0) {
        /* mini-batch mb is s[a, z); this rank runs the passes of its share of it */
        int MB = c->algorithm.mini_batches < K ? c->algorithm.mini_batches : K;
#define MB_RANGE(mb, a, z, la, lz)                                                     \
    int a = (int)((long)K * (mb) / MB), z = (int)((long)K * ((mb) + 1) / MB), la, lz; \
    rank_share(R, s, a, z, &la, &lz)
        for (int mb = 0; mb < MB && need_old; mb++) {
            MB_RANGE(mb, a, z, la, lz);
            if (run_passes(R, s + la, lz - la, PASS_OLD, &pp, NULL, NULL, NULL, err, cap)) goto done;
        }
        if (need_ref) {
            model_use_params(&R->m, R->ref_params);
            int e = 0;
            for (int mb = 0; mb < MB && !e; mb++) {
                MB_RANGE(mb, a, z, la, lz);
                e = run_passes(R, s + la, lz - la, PASS_REF, &pp, NULL, NULL, NULL, err, cap);
            }
            model_use_params(&R->m, NULL);
            if (e) goto done;
        }
        for (int e = 0; e < c->algorithm.ppo_epochs; e++)
            for (int mb = 0; mb < MB; mb++) {
                MB_RANGE(mb, a, z, la, lz);
#undef MB_RANGE
                pp.norm_tokens = 0;
                for (int k = a; k < z; k++) pp.norm_tokens += s[k].nc;
                pp.norm_seqs = z - a;
                model_zero_grads(&R->m);
                double l = 0, en = 0;
                pg_stats u = {0};
                if (run_passes(R, s + la, lz - la, PASS_TRAIN, &pp, &u, &l, e == 0 ? &en : NULL, err, cap)) goto done;
                /* the mini-batch's loss and statistics: sums over the ranks */
                double sums[7] = {l, en, u.kl, u.clip_low, u.clip_high, u.ratio_mean, (double)u.tokens};
                if (comm_sum(R->cm, sums, 7, err, cap)) goto done;
                l = sums[0], en = sums[1];
                acc.kl += sums[2], acc.clip_low += sums[3], acc.clip_high += sums[4], acc.ratio_mean += sums[5];
                acc.tokens += (long)sums[6];
                double gn;
                int up = isfinite(l) ? optimizer_update(R, &gn, err, cap) : 1;
                if (up < 0) goto done;
                if (up) {
                    bad++; /* this update is dropped; the step's other updates still apply */
                    model_zero_grads(&R->m);
                    continue;
                }
                loss += l, ent += en, gn_sum += gn;
                n_updates++;
            }
    }
    double t3 = now_seconds();
    /* 6. metrics */
    if (bad) {
        json_object_set_new(rec, "skipped_updates", json_integer(bad));
        json_object_set_new(rec, "applied_updates", json_integer(n_updates));
    }
    double rs = 0, rss = 0;
    int rn = 0;
    for (int i = 0; i < N; i++)
        if (valid[i]) rs += reward[i], rn++;
    double rmean = rn ? rs / rn : NAN;
    for (int i = 0; i < N; i++)
        if (valid[i]) rss += (reward[i] - rmean) * (reward[i] - rmean);
    json_object_set_new(rec, "reward", json_num(rmean));
    json_object_set_new(rec, "reward_std", json_num(rn > 1 ? sqrt(rss / (rn - 1)) : 0));
    for (int g = 0; g < NG; g++) {
        double gs = 0;
        long gnum = 0, gerr = 0;
        for (int i = 0; i < N; i++) {
            const grade_result *x = &gres[(size_t)i * NG + g];
            if (x->status == GRADE_OK) gs += x->score, gnum++;
            else if (x->status == GRADE_ERROR) gerr++;
        }
        char k[160];
        snprintf(k, sizeof k, "rewards/%s/mean", c->graders.names[g]);
        json_object_set_new(rec, k, json_num(gnum ? gs / gnum : NAN));
        snprintf(k, sizeof k, "grader_errors/%s", c->graders.names[g]);
        json_object_set_new(rec, k, json_integer(gerr));
    }
    json_object_set_new(rec, "frac_reward_zero_std", json_num((double)zero_std / B));
    json_object_set_new(rec, "loss", json_num(n_updates ? loss / n_updates : NAN));
    json_object_set_new(rec, "kl", json_num(acc.tokens ? acc.kl / acc.tokens : 0));
    json_object_set_new(rec, "entropy", json_num(ktoks ? ent / ktoks : NAN));
    json_object_set_new(rec, "clip_ratio/low_mean", json_num(acc.tokens ? acc.clip_low / acc.tokens : 0));
    json_object_set_new(rec, "clip_ratio/high_mean", json_num(acc.tokens ? acc.clip_high / acc.tokens : 0));
    json_object_set_new(rec, "completions/mean_length", json_num((double)gen_tokens / N));
    json_object_set_new(rec, "completions/clipped_ratio", json_num((double)clipped / N));
    json_object_set_new(rec, "grad_norm", json_num(n_updates ? gn_sum / n_updates : NAN));
    json_object_set_new(rec, "learning_rate", json_num(optim_lr(&R->opt.cfg, R->opt.step > 0 ? R->opt.step : 1)));
    json_object_set_new(rec, "timing/sampling", json_num(tg.sampling));
    json_object_set_new(rec, "timing/grading", json_num(t2 - t0 - tg.sampling)); /* not hidden by sampling */
    json_object_set_new(rec, "timing/grading_busy", json_num(tg.grading_busy));
    json_object_set_new(rec, "timing/training", json_num(t3 - t2));
    json_object_set_new(rec, "tokens_per_s", json_num(gen_tokens / (t3 - t0)));
    /* samples.jsonl: the first log_samples completions */
    for (int i = 0; i < N && i < c->train.log_samples && R->samples; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "step", json_integer(R->st.step + 1));
        json_object_set_new(o, "row", json_integer(rows[i / G]));
        json_object_set_new(o, "sample", json_integer(i % G));
        json_t *msgs = json_object_get(items[i], "messages"), *prm = json_object_get(items[i], "prompt");
        json_object_set(o, "prompt", msgs ? msgs : prm);
        size_t tn;
        char *txt = utf8_sanitize(cs[i].text, cs[i].text_len, &tn); /* a completion may end inside a character */
        json_object_set_new(o, "completion", txt ? json_stringn(txt, tn) : json_null());
        free(txt);
        json_object_set_new(o, "reward", valid[i] ? json_num(reward[i]) : json_null());
        json_t *sub = json_object();
        for (int g = 0; g < NG; g++) {
            const grade_result *x = &gres[(size_t)i * NG + g];
            json_object_set_new(sub, c->graders.names[g], x->status == GRADE_OK ? json_num(x->score) : json_null());
        }
        json_object_set_new(o, "sub_rewards", sub);
        json_object_set_new(o, "advantage", json_num(adv[i]));
        json_object_set_new(o, "finish_reason", json_string(cs[i].finish == ROLLOUT_STOP ? "stop" : "length"));
        char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        if (js) fprintf(R->samples, "%s\n", js);
        free(js);
        json_decref(o);
    }
    if (R->samples) fflush(R->samples);
    rc = bad;
done:
    if (cs)
        for (int i = 0; i < N; i++) completion_free(&cs[i]);
    free(rows), free(pr), free(cs), free(items), free(prow), free(gres), free(reward), free(adv), free(valid), free(keep),
        free(s), free(buf);
    return rc;
}

/* ---- set-up and the loop ---- */

static void run_free(run *R, int failed) {
    comm_free(R->cm, failed); /* first: see comm_free */
    if (R->metrics) fclose(R->metrics);
    if (R->samples) fclose(R->samples);
    if (R->gr) grader_runner_free(R->gr);
    if (R->have_ro) rollout_free(&R->ro);
    if (R->ref_params) R->be->free(R->be, R->ref_params);
    if (R->have_opt) optim_free(&R->opt);
    if (R->have_model) model_free(&R->m);
    dataset_free(&R->train);
    dataset_free(&R->valid);
    tokenizer_free(R->tok);
    free(R->order);
    free(R->config_text);
    free(R->b_tok), free(R->b_tgt), free(R->b_cu), free(R->b_logp), free(R->b_ent), free(R->b_w), free(R->b_went);
    if (R->be) R->be->destroy(R->be);
}

int train_run(rft_config *c, const char *resume, char *err, size_t cap) {
    run R = {0};
    R.cfg = c;
    R.valid_start = R.valid_last = NAN;
    R.st.best_valid_reward = NAN;
    R.st.best_step = -1;
    R.st.seed = c->train.seed;
    int status = RFT_EXIT_BADINPUT;
    char e2[1024];
    /* the ranks: rank r uses GPU local_rank; CPU ranks on one machine share its cores */
    int rank, n_ranks, local_rank, local_size;
    if (comm_env(&rank, &n_ranks, &local_rank, &local_size, err, cap)) return RFT_EXIT_BADINPUT;
    R.be = backend_for_device(c->device, local_rank, comm_threads(c->threads), e2, sizeof e2);
    if (!R.be) {
        errf(err, cap, "%s: %s", c->path, e2);
        return RFT_EXIT_BADINPUT;
    }
    R.lead = rank == 0; /* the ranks are joined once the grader workers exist (they fork) */
    /* output directory and the checkpoint to start from */
    if (mkdir_p(c->train.out_dir, err, cap)) goto out;
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/checkpoints", c->train.out_dir);
    if (mkdir_p(sub, err, cap)) goto out;
    if (R.lead) remove_stale_tmp(c->train.out_dir);
    long steps[4096];
    int n_ck = list_checkpoints(c->train.out_dir, steps, 4096);
    char start[1200];
    snprintf(start, sizeof start, "%s", c->model.path);
    int resuming = 0;
    if (resume) {
        if (resume[0]) snprintf(start, sizeof start, "%s", resume);
        else if (n_ck) ckpt_name(&R, steps[n_ck - 1], start, sizeof start);
        else {
            errf(err, cap, "--resume: no checkpoint in %s/checkpoints", c->train.out_dir);
            goto out;
        }
        resuming = 1;
    } else if (n_ck) {
        errf(err, cap, "%s: train.out_dir %s already holds checkpoints; use --resume or another out_dir", c->path,
             c->train.out_dir);
        goto out;
    }
    R.max_tokens = c->train.max_tokens_per_pass;
    int ctx = c->data.max_prompt_tokens + c->sampling.max_new_tokens;
    model_config mc;
    if (model_source_config(start, &mc, e2, sizeof e2)) {
        errf(err, cap, "%s", e2);
        goto out;
    }
    if (ctx > mc.max_seq) ctx = mc.max_seq;
    int cap_tokens = R.max_tokens > ctx ? R.max_tokens : ctx;
    if (model_import(start, R.be, cap_tokens, &R.m, &R.tok, e2, sizeof e2)) {
        errf(err, cap, "%s", e2);
        goto out;
    }
    R.have_model = 1;
    R.max_tokens = cap_tokens;
    /* model.dtype bf16: the training forward/backward (policy, old and
       reference log-probs alike) on bf16 products, fp32 master weights */
    if (!strcmp(c->model.dtype, "bf16") && model_set_mixed(&R.m, 1, e2, sizeof e2)) {
        errf(err, cap, "%s: model.dtype: %s", c->path, e2);
        status = RFT_EXIT_RUNTIME;
        goto out;
    }
    if (!R.tok) {
        errf(err, cap, "%s: the model has no tokenizer", start);
        goto out;
    }
    if (strcmp(c->model.chat_template, "auto") && tokenizer_set_chat_template(R.tok, c->model.chat_template, e2, sizeof e2)) {
        errf(err, cap, "%s: model.chat_template: %s", c->path, e2);
        goto out;
    }
    /* data */
    rollout_config_from(c, R.tok, c->sampling.temperature, c->train.seed, R.stop, R.stops, &R.rcfg);
    dataset_opts dop = {.need_answer = c->algorithm.name == ALGO_SFT, .max_prompt_tokens = c->data.max_prompt_tokens,
                        .max_seq = ctx, .graders = c->have_graders ? c->graders.graders : NULL,
                        .n_graders = c->have_graders ? c->graders.n_graders : 0,
                        .end_of_turn = -1};
    const char *tmpl = tokenizer_chat_template_name(R.tok);
    const char *eot = !strcmp(tmpl, "chatml") ? "<|im_end|>" : !strcmp(tmpl, "llama3") ? "<|eot_id|>" : NULL;
    dop.end_of_turn = eot ? tokenizer_token_to_id(R.tok, eot, strlen(eot)) : -1;
    if (dop.end_of_turn < 0) dop.end_of_turn = tokenizer_eos_id(R.tok);
    if (c->algorithm.name == ALGO_SFT) dop.max_seq = mc.max_seq < R.max_tokens + 1 ? mc.max_seq : R.max_tokens + 1;
    if (dataset_load(c->data.train, R.tok, &dop, &R.train, err, cap)) goto out;
    if (c->data.valid[0]) {
        dop.need_answer = dop.need_answer && !c->have_graders; /* graded evaluation needs no answers */
        if (dataset_load(c->data.valid, R.tok, &dop, &R.valid, err, cap)) goto out;
        R.have_valid = 1;
    }
    /* graders (start-up failures are bad input) */
    if (c->have_graders) {
        R.gr = grader_runner_create(c->graders.graders, c->graders.n_graders, c->graders.workers, err, cap);
        if (!R.gr) goto out;
    }
    status = RFT_EXIT_RUNTIME;
    /* the ranks of the run (after the grader workers are forked: MPI's
       transports may not survive a fork) */
    R.cm = comm_create(R.be, e2, sizeof e2);
    if (!R.cm) {
        errf(err, cap, "joining the ranks of the run: %s", e2);
        goto out;
    }
    /* optimizer and schedule */
    int steps_per_epoch = (R.train.n + c->train.batch_size - 1) / c->train.batch_size;
    R.total_steps = c->train.max_steps > 0 ? c->train.max_steps : (long)steps_per_epoch * c->train.n_epochs;
    int updates_per_step = c->algorithm.name == ALGO_SFT ? 1 : c->algorithm.ppo_epochs * c->algorithm.mini_batches;
    optim_config oc = {.lr = c->train.learning_rate, .beta1 = c->train.beta1, .beta2 = c->train.beta2,
                       .eps = c->train.adam_eps, .weight_decay = c->train.weight_decay, .grad_clip = c->train.grad_clip,
                       .schedule = !strcmp(c->train.lr_schedule, "linear")   ? LR_LINEAR
                                   : !strcmp(c->train.lr_schedule, "cosine") ? LR_COSINE
                                                                             : LR_CONSTANT,
                       .warmup_steps = c->train.warmup_steps * updates_per_step,
                       .total_steps = (int)(R.total_steps * updates_per_step), .min_lr_ratio = c->train.min_lr_ratio};
    if (optim_create(&R.opt, &R.m, &oc, err, cap)) goto out;
    R.have_opt = 1;
    R.order = malloc((size_t)R.train.n * sizeof(int32_t));
    R.b_tok = malloc((size_t)R.max_tokens * sizeof(int32_t));
    R.b_tgt = malloc((size_t)R.max_tokens * sizeof(int32_t));
    R.b_cu = malloc((size_t)(R.max_tokens + 1) * sizeof(int32_t));
    R.b_logp = malloc((size_t)R.max_tokens * sizeof(float));
    R.b_ent = malloc((size_t)R.max_tokens * sizeof(float));
    R.b_w = malloc((size_t)R.max_tokens * sizeof(float));
    R.b_went = malloc((size_t)R.max_tokens * sizeof(float));
    if (!R.order || !R.b_tok || !R.b_tgt || !R.b_cu || !R.b_logp || !R.b_ent || !R.b_w || !R.b_went) {
        errf(err, cap, "out of memory");
        goto out;
    }
    dataset_epoch_order(R.train.n, c->train.seed, 0, R.order);
    /* resume: optimizer, trainer state, logs */
    if (resuming) {
        ckpt_file *f = ckpt_open(start, err, cap);
        if (!f) {
            status = RFT_EXIT_BADINPUT;
            goto out;
        }
        int e = !ckpt_has_optim(f) || !ckpt_has_train_state(f);
        if (e) errf(err, cap, "%s: not a training checkpoint (no /optimizer or /trainer)", start);
        if (!e) e = ckpt_load_optim(f, &R.opt, err, cap) || ckpt_load_train_state(f, &R.st, err, cap);
        ckpt_close(f);
        if (e) {
            status = RFT_EXIT_BADINPUT;
            goto out;
        }
        if (R.st.n_order != R.train.n) {
            errf(err, cap, "%s: the checkpoint's data order has %ld rows, %s has %d", start, (long)R.st.n_order,
                 c->data.train, R.train.n);
            status = RFT_EXIT_BADINPUT;
            goto out;
        }
        memcpy(R.order, R.st.data_order, (size_t)R.train.n * sizeof(int32_t));
        free(R.st.data_order);
        R.st.data_order = NULL;
        char *now_text = config_render(c);
        if (R.lead) note_config_changes(R.st.config_text, now_text);
        free(now_text);
        free(R.st.config_text);
        R.st.config_text = NULL;
        char mp[1200];
        snprintf(mp, sizeof mp, "%s/metrics.jsonl", c->train.out_dir);
        if (R.lead && truncate_log(mp, (long)R.st.step, err, cap)) goto out;
        snprintf(mp, sizeof mp, "%s/samples.jsonl", c->train.out_dir);
        if (R.lead && truncate_log(mp, (long)R.st.step, err, cap)) goto out;
    }
    if (c->algorithm.kl_beta > 0) {
        /* the reference policy: the starting weights (for a resumed run, those of the original start) */
        R.ref_params = R.be->alloc(R.be, R.m.n_params * sizeof(float));
        if (!R.ref_params) {
            errf(err, cap, "cannot allocate the reference policy: %s", R.be->err);
            goto out;
        }
        if (resuming) {
            model ref;
            if (model_import(c->model.path, R.be, 16, &ref, NULL, e2, sizeof e2)) {
                errf(err, cap, "reference policy: %s", e2);
                goto out;
            }
            R.be->copy_d2d(R.be, R.ref_params, ref.params, R.m.n_params * sizeof(float));
            model_free(&ref);
        } else {
            R.be->copy_d2d(R.be, R.ref_params, R.m.params, R.m.n_params * sizeof(float));
        }
    }
    if (R.gr || c->algorithm.name != ALGO_SFT) {
        int G = c->algorithm.name == ALGO_SFT ? (c->train.eval_samples > 0 ? c->train.eval_samples : 1) : c->sampling.group_size;
        int slots = (c->train.batch_size + R.cm->size - 1) / R.cm->size * G; /* this rank's share of the prompts */
        if (R.have_valid) {
            int ev = c->train.eval_samples > 0 ? c->train.eval_samples : 1;
            if (slots < ev) slots = ev;
        }
        if (slots > 256) slots = 256;
        if (slots > R.max_tokens) slots = R.max_tokens;
        if (slots < G) {
            errf(err, cap, "%s: sampling.group_size %d exceeds train.max_tokens_per_pass %d", c->path, G, R.max_tokens);
            status = RFT_EXIT_BADINPUT;
            goto out;
        }
        if (rollout_create(&R.ro, &R.m, R.tok, slots, ctx, err, cap)) goto out;
        R.have_ro = 1;
    }
    char mp[1200];
    R.config_text = config_render(c);
    if (R.lead) {
        snprintf(mp, sizeof mp, "%s/metrics.jsonl", c->train.out_dir);
        R.metrics = fopen(mp, resuming ? "ab" : "wb");
        if (R.metrics) {
            snprintf(mp, sizeof mp, "%s/samples.jsonl", c->train.out_dir);
            R.samples = fopen(mp, resuming ? "ab" : "wb");
        }
        if (!R.metrics || !R.samples) {
            errf(err, cap, "%s: %s", mp, strerror(errno));
            goto out;
        }
        snprintf(mp, sizeof mp, "%s/config.yaml", c->train.out_dir);
        FILE *cf = fopen(mp, "wb");
        if (cf) fputs(R.config_text, cf), fclose(cf);
        R.tty = isatty(2);
        fprintf(stderr, "%s", R.config_text);
        fprintf(stderr, "rft train: %s, %d train rows%s, %ld steps, model %s (%zu parameters), %s backend, ",
                algo_str(c->algorithm.name), R.train.n, R.have_valid ? "" : " (no valid set)", R.total_steps, start,
                R.m.n_params, R.be->name);
        if (R.be->stream) fprintf(stderr, "GPU %d", R.be->device);
        else fprintf(stderr, "%d threads", R.be->n_threads);
        if (R.cm->size > 1) fprintf(stderr, ", %d ranks (%s)", R.cm->size, R.cm->kind);
        fputc('\n', stderr);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (!strcmp(R.be->name, "cpu") && local_size > 1 && (long)R.be->n_threads * local_size > ncpu)
            fprintf(stderr, "rft train: note: %d ranks on this machine x %d threads each > its %ld cores: set threads "
                            "to %ld (or 0) to stop them fighting over the cores\n",
                    local_size, R.be->n_threads, ncpu, ncpu / local_size > 0 ? ncpu / local_size : 1);
    }
    /* the other ranks print errors only */
    if (R.lead && R.be->tf32 && !strcmp(c->model.dtype, "fp32"))
        fprintf(stderr, "rft train: note: fp32 on the GPU runs its matmuls and attention on TF32 tensor cores (10-bit "
                        "mantissa operands, fp32 sums); RFT_CUDA_TF32=0 in the environment for plain fp32\n");
    if (R.lead && !strcmp(R.be->name, "cpu") && cpu_openblas_note()) fprintf(stderr, "rft train: %s\n", cpu_openblas_note());
    if (R.lead && !strcmp(R.be->name, "cpu") && !strcmp(c->sampling.dtype, "bf16") && !cpu_has_bf16_kernel())
        fprintf(stderr, "rft train: note: this CPU has neither AVX512_BF16 nor AVX2: sampling.dtype bf16 runs a "
                        "portable loop, slower than fp32 rollouts\n");
    if (R.lead && !strcmp(R.be->name, "cpu") && !strcmp(c->model.dtype, "bf16") && !cpu_has_bf16_kernel())
        fprintf(stderr, "rft train: note: this CPU has neither AVX512_BF16 nor AVX2: model.dtype bf16 widens every "
                        "GEMM operand to fp32, slower than fp32 training\n");
    g_stop = 0;
    g_repeat_s = getenv("RFT_RANK") ? 2.0 : 0.0;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (ranks_agree(&R, 0, err, cap)) goto out; /* the same starting point everywhere */
    double t_start = now_seconds();
    if (!resuming && R.have_valid) {
        json_t *rec = json_object();
        json_object_set_new(rec, "step", json_integer(0));
        if (evaluate(&R, rec, err, cap)) {
            json_decref(rec);
            goto out;
        }
        log_record(&R, rec);
        json_decref(rec);
    }
    int interrupted = 0;
    while (R.st.step < R.total_steps) {
        double ts = now_seconds();
        json_t *rec = json_object();
        json_object_set_new(rec, "step", json_integer(R.st.step + 1));
        /* the epoch of the step's first prompt (the next epoch starts lazily, in next_row) */
        json_object_set_new(rec, "epoch", json_integer(R.st.epoch + (R.st.cursor >= R.train.n)));
        int r = c->algorithm.name == ALGO_SFT ? step_sft(&R, rec, err, cap) : step_rl(&R, rec, err, cap);
        if (r < 0) {
            json_decref(rec);
            goto out;
        }
        R.st.step++;
        if (r > 0) {
            R.bad_streak++;
            if (R.lead) {
            json_t *su = json_object_get(rec, "skipped_updates"), *au = json_object_get(rec, "applied_updates");
            if (su && au && json_integer_value(au) > 0)
                fprintf(stderr, "%sstep %ld: non-finite loss or gradient in %lld of %lld updates, those skipped (%d in a row)\n",
                        R.tty ? "\n" : "", (long)R.st.step, (long long)json_integer_value(su),
                        (long long)(json_integer_value(su) + json_integer_value(au)), R.bad_streak);
            else
                fprintf(stderr, "%sstep %ld: non-finite loss or gradient, update skipped (%d in a row)\n", R.tty ? "\n" : "",
                        (long)R.st.step, R.bad_streak);
            }
            json_object_set_new(rec, "skipped", json_true());
            if (R.bad_streak >= c->train.max_bad_steps) {
                log_record(&R, rec);
                json_decref(rec);
                errf(err, cap, "stopping: %d consecutive steps with non-finite loss or gradients (train.max_bad_steps); "
                     "the last good checkpoint is kept in %s/checkpoints", R.bad_streak, c->train.out_dir);
                goto out;
            }
        } else {
            R.bad_streak = 0;
        }
        int last = R.st.step == R.total_steps;
        if ((c->train.eval_interval > 0 && R.st.step % c->train.eval_interval == 0) || last)
            if (evaluate(&R, rec, err, cap)) {
                json_decref(rec);
                goto out;
            }
        R.st.wall_seconds += now_seconds() - ts;
        json_object_set_new(rec, "timing/step", json_num(now_seconds() - ts));
        log_record(&R, rec);
        progress(&R, rec, now_seconds() - t_start);
        json_decref(rec);
        /* a signal during the last step just ends the run; the ranks stop after the same step */
        double stop_votes = g_stop != 0;
        if (comm_sum(R.cm, &stop_votes, 1, err, cap)) goto out;
        interrupted = stop_votes > 0 && !last;
        if ((c->train.checkpoint_interval > 0 && R.st.step % c->train.checkpoint_interval == 0) || last || interrupted) {
            char p[1200];
            ckpt_name(&R, (long)R.st.step, p, sizeof p);
            int e = save_checkpoint(&R, p, 1, err, cap);
            if (ranks_agree(&R, e != 0, err, cap)) goto out; /* the others wait for rank 0's checkpoint */
            prune_checkpoints(&R);
        }
        if (interrupted) break;
    }
    if (R.tty) fputc('\n', stderr);
    char p[1200];
    ckpt_name(&R, (long)R.st.step, p, sizeof p);
    if (!R.lead) {
        status = interrupted ? RFT_EXIT_RUNTIME : RFT_EXIT_OK;
        if (interrupted) errf(err, cap, "interrupted after step %ld", (long)R.st.step);
        goto out;
    }
    if (interrupted) {
        errf(err, cap, "interrupted after step %ld; checkpoint %s; continue with --resume", (long)R.st.step, p);
        status = RFT_EXIT_RUNTIME;
        goto out;
    }
    printf("done: %ld steps in %.1f s\n", (long)R.st.step, now_seconds() - t_start);
    if (!isnan(R.valid_start) || !isnan(R.valid_last))
        printf("valid_reward_mean: start %.4f -> final %.4f (best %.4f at step %ld)\n", R.valid_start, R.valid_last,
               R.st.best_valid_reward, (long)R.st.best_step);
    printf("outputs: %s/metrics.jsonl, %s/samples.jsonl, final checkpoint %s\n", c->train.out_dir, c->train.out_dir, p);
    if (!isnan(R.st.best_valid_reward)) printf("best model (valid_reward_mean %.4f): %s/best.h5\n", R.st.best_valid_reward, c->train.out_dir);
    status = RFT_EXIT_OK;
out:
    if (!g_stop) { /* after a stop request the handler stays: its repeat may still be on the way */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
    }
    ckpt_train_state_free(&R.st);
    run_free(&R, status != RFT_EXIT_OK);
    return status;
}
