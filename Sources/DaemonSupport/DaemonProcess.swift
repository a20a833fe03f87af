import CMalloc
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum DaemonProcess {
    /// Process-wide settings every daemon of ours starts with:
    /// - SIGPIPE ignored: libvirt, Proton and our sockets may write to a peer that is gone;
    /// - SIGHUP ignored until the reload service listens for it: a reload asked for during
    ///   start-up must not end the daemon (its default action);
    /// - at most two malloc arenas: glibc's default (eight per core) lets each of our worker
    ///   threads keep its own, which measured 3 MB more resident memory for no gain in a daemon
    ///   that allocates little.
    public static func prepare() {
        signal(SIGPIPE, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        _ = mallopt(M_ARENA_MAX, 2)
    }
}
