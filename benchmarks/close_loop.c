/* A tight close(-1) loop: the event source of vm_percall.py.
 *
 * Every iteration is one real close system call on fd -1 (syscall(SYS_close, -1), not glibc's
 * cancellable wrapper), which the kernel passes to close_fd(unsigned int fd) as 4294967295 and
 * which fails there at once with EBADF: one call of close_fd per iteration, and little else.
 * Compiled at benchmark time (cc -O2), like getpid_loop.c, whose protocol it shares:
 *
 *   close_loop n COUNT      run COUNT iterations now; print "COUNT WALL_NS CPU_NS"
 *   close_loop t SECONDS    run for SECONDS now; print "ITERATIONS WALL_NS CPU_NS"
 *   close_loop serve        read commands from stdin, one a line ("n COUNT" or "t SECONDS"),
 *                           answer each with "ITERATIONS WALL_NS CPU_NS"; stop at EOF.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* This thread's CPU time: a BPF program on close_fd runs in this task's context, so its cost is
 * counted; time the vCPU spent on other tasks is not. */
static long long cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static void close_bad_fd(void) { syscall(SYS_close, -1); }

static void run_count(long long count) {
    long long cpu = cpu_ns(), start = now_ns();
    for (long long i = 0; i < count; i++)
        close_bad_fd();
    long long elapsed = now_ns() - start;
    printf("%lld %lld %lld\n", count, elapsed, cpu_ns() - cpu);
    fflush(stdout);
}

static void run_time(double seconds) {
    long long cpu = cpu_ns(), start = now_ns(), stop = start + (long long)(seconds * 1e9), done = 0, t = start;
    while (t < stop) {
        for (int i = 0; i < 256; i++)
            close_bad_fd();
        done += 256;
        t = now_ns(); /* the vDSO, or a clock_gettime system call where the clock is the HPET: never close_fd */
    }
    printf("%lld %lld %lld\n", done, t - start, cpu_ns() - cpu);
    fflush(stdout);
}

static int command(const char *mode, const char *arg) {
    if (strcmp(mode, "n") == 0)
        run_count(atoll(arg));
    else if (strcmp(mode, "t") == 0)
        run_time(atof(arg));
    else
        return -1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3)
        return command(argv[1], argv[2]) ? 2 : 0;
    if (argc == 2 && strcmp(argv[1], "serve") == 0) {
        char line[128], mode[16], arg[64];
        while (fgets(line, sizeof line, stdin)) {
            if (sscanf(line, "%15s %63s", mode, arg) != 2 || command(mode, arg)) {
                fprintf(stderr, "close_loop: bad command: %s", line);
                return 2;
            }
        }
        return 0;
    }
    fprintf(stderr, "usage: close_loop n COUNT | t SECONDS | serve\n");
    return 2;
}
