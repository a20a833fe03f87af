/*
 * Makes the real fence_xvm draw the same seqno in every run, for a test (LD_PRELOAD only): it
 * takes its seqno from gettimeofday()'s microseconds, which this library holds at one value
 * while the seconds run on. Under load, real runs collide this way on scheduler ticks.
 */
#include <sys/time.h>
#include <time.h>

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec now;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        return -1;
    tv->tv_sec = now.tv_sec;
    tv->tv_usec = 424242;
    return 0;
}
