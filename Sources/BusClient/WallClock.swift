#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Wall-clock time in ms since the Unix epoch: what bus timestamps and command deadlines use, so
/// that hosts can compare them (their clocks must agree, NTP).
public enum WallClock {
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }

    /// The wall-clock deadline (ms) that corresponds to a monotonic instant, as seen from here.
    public static func deadline(for instant: ContinuousClock.Instant, now: UInt64 = now()) -> UInt64 {
        let (seconds, attoseconds) = (instant - .now).components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return milliseconds > 0 ? now + UInt64(milliseconds) : now
    }

    /// The monotonic instant that corresponds to a wall-clock deadline, as seen from here.
    public static func instant(for deadline: UInt64, now: UInt64 = now()) -> ContinuousClock.Instant {
        ContinuousClock.now + .milliseconds(difference(from: now, to: deadline))
    }

    /// `later - earlier` in ms, saturated: bus timestamps come from other machines, and a forged
    /// or broken one must not trap the receiver.
    public static func difference(from earlier: UInt64, to later: UInt64) -> Int64 {
        later >= earlier ? Int64(clamping: later - earlier) : -Int64(clamping: earlier - later)
    }
}
