/* Peak rate of one core for the inner step of a float32 and of an int8 matrix product (AVX2).
 *
 * Built and run by bench/simd_rates.py. Each loop repeats one step on independent registers
 * so that only the instructions' throughput limits it, not their latency. Steps:
 *   fma           vfmadd231ps: 8 float32 multiply-adds
 *   fma_memory    vbroadcastss + 2 vfmadd231ps with one operand from memory (XNNPACK's f32 GEMM step)
 *   madd_add      vpmaddwd + vpaddd: 16 int16 products summed in pairs into 8 int32 accumulators
 *   sx_madd_add   vpmovsxbw from memory + vpmaddwd + vpaddd: 16 int8 products widened to int16 first
 *                 (XNNPACK's AVX2 qs8/qd8 GEMM step, no dot-product instruction)
 *   ubs_madd_add  vpmaddubsw from memory + vpmaddwd by ones + vpaddd: 32 u8 x s8 products
 *                 (saturating int16 pair sums: oneDNN's and MLAS's AVX2 int8 step, not XNNPACK's)
 * Prints one JSON object: for each step, [steps per second in G, multiply-adds per second in G].
 */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define ITER 40000000L
static char buf[2048] __attribute__((aligned(64)));
#define CLOBBERS "ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8", "ymm9", "ymm10", \
                 "ymm11", "ymm12", "ymm13", "ymm14", "ymm15", "cc", "memory"
/* Ten steps per iteration; a: accumulator, s: a constant source (or a second accumulator),
 * t: a temporary, o: byte offset into buf. */
#define RUN(NAME, STEP)                                                                              \
    static double NAME(void) {                                                                       \
        long n = ITER;                                                                               \
        const char *p = buf;                                                                         \
        double start = now();                                                                        \
        __asm__ volatile("vpxor %%ymm15, %%ymm15, %%ymm15\n1:\n"                                     \
                         STEP(0, 5, 10, 0) STEP(1, 6, 11, 16) STEP(2, 7, 12, 32) STEP(3, 8, 13, 48)  \
                         STEP(4, 9, 14, 64) STEP(0, 5, 10, 80) STEP(1, 6, 11, 96) STEP(2, 7, 12, 112) \
                         STEP(3, 8, 13, 128) STEP(4, 9, 14, 144) "dec %0\njnz 1b\n"                  \
                         : "+r"(n) : "r"(p) : CLOBBERS);                                             \
        return ITER * 10.0 / (now() - start) / 1e9;                                                  \
    }
/* The float32 steps use ten accumulators (FMA latency 4 cycles, two per cycle): two FMAs a step. */
#define FMA(a, s, t, o) "vfmadd231ps %%ymm15, %%ymm14, %%ymm" #a "\n vfmadd231ps %%ymm15, %%ymm14, %%ymm" #s "\n"
#define FMA_MEMORY(a, s, t, o) "vbroadcastss " #o "(%1), %%ymm" #t "\n vfmadd231ps 512+" #o "(%1), %%ymm" #t \
    ", %%ymm" #a "\n vfmadd231ps 1024+" #o "(%1), %%ymm" #t ", %%ymm" #s "\n"
#define MADD_ADD(a, s, t, o) "vpmaddwd %%ymm15, %%ymm" #s ", %%ymm" #t "\n vpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n"
#define SX_MADD_ADD(a, s, t, o) "vpmovsxbw " #o "(%1), %%ymm" #t "\n vpmaddwd %%ymm" #s ", %%ymm" #t ", %%ymm" #t \
    "\n vpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n"
#define UBS_MADD_ADD(a, s, t, o) "vpmaddubsw 512+" #o "(%1), %%ymm" #s ", %%ymm" #t "\n vpmaddwd %%ymm15, %%ymm" #t \
    ", %%ymm" #t "\n vpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n"
RUN(step_fma, FMA)
RUN(step_fma_memory, FMA_MEMORY)
RUN(step_madd_add, MADD_ADD)
RUN(step_sx_madd_add, SX_MADD_ADD)
RUN(step_ubs_madd_add, UBS_MADD_ADD)

int main(void) {
    double (*steps[5])(void) = {step_fma, step_fma_memory, step_madd_add, step_sx_madd_add, step_ubs_madd_add};
    /* multiply-adds per step-loop unit: 16 for the two-FMA steps, 16 for vpmaddwd, 32 for vpmaddubsw */
    const double macs[5] = {16, 16, 16, 16, 32};
    const char *names[5] = {"fma", "fma_memory", "madd_add", "sx_madd_add", "ubs_madd_add"};
    double best[5] = {0};
    for (int round = 0; round < 5; round++)
        for (int k = 0; k < 5; k++) {
            double rate = steps[k]();
            if (rate > best[k]) best[k] = rate;
        }
    printf("{");
    for (int k = 0; k < 5; k++)
        printf("%s\"%s\": [%.3f, %.1f]", k ? ", " : "", names[k], best[k], best[k] * macs[k]);
    printf("}\n");
    return 0;
}
