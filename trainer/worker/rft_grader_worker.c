/* trainer/worker/rft_grader_worker.c: the small program rft starts as a grader
 * worker process (isolation: process). It links only the grader host code
 * (grader_worker.c, grader_load.c, grader_item.c, util.c), so it starts in
 * milliseconds, unlike the full rft binary with its BLAS/CUDA libraries. The
 * work happens in grader_worker.c's constructor, which runs the worker loop
 * when RFT_GRADER_WORKER is set; main() only answers someone running it by
 * hand. */
#include <stdio.h>

int main(void) {
    fprintf(stderr, "rft-grader-worker: started by rft to run grader plugins in isolation; not for direct use\n");
    return 2;
}
