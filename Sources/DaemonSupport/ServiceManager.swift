#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ServiceLifecycle

/// The systemd notification protocol (`Type=notify`): a datagram per state change to the socket
/// named in `$NOTIFY_SOCKET`. Without that variable (no systemd, or another service manager)
/// every call does nothing.
public enum ServiceManager {
    /// The socket address, read once: a path, or an abstract name when it starts with '@'.
    private static let socketPath: [UInt8]? = {
        guard let value = getenv("NOTIFY_SOCKET") else { return nil }
        var path = Array(String(cString: value).utf8)
        guard !path.isEmpty, path.first == UInt8(ascii: "/") || path.first == UInt8(ascii: "@") else { return nil }
        if path[0] == UInt8(ascii: "@") { path[0] = 0 }
        return path
    }()

    /// How often systemd expects `WATCHDOG=1` (half its `WatchdogSec=`), when it watches this process.
    public static let watchdogInterval: Duration? = {
        guard let text = getenv("WATCHDOG_USEC"), let microseconds = Int64(String(cString: text)), microseconds > 0 else { return nil }
        if let pid = getenv("WATCHDOG_PID"), Int32(String(cString: pid)) != getpid() { return nil }
        return .microseconds(microseconds / 2)
    }()

    /// Sends one notification such as `READY=1`; a lost one is not worth failing for.
    public static func notify(_ state: String) {
        notify(state, socket: socketPath)
    }

    /// Never waits: a service manager that stops reading loses notifications, it does not stall
    /// the cooperative thread that sends them (a blocking send did, once the socket's queue of
    /// ten datagrams was full, and SIGTERM then went unanswered).
    static func notify(_ state: String, socket path: [UInt8]?) {
        guard let path else { return }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(descriptor, message, message.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT), $0, length) }
        }
    }
}

/// Keeps systemd informed while the daemon runs: watchdog pings from the cooperative pool (so a
/// stuck pool stops them and systemd restarts us), and `STOPPING=1` when shutdown begins. It is
/// the last service of the group, so the first one told of the shutdown.
struct ServiceManagerLink: Service {
    func run() async throws {
        let interval = ServiceManager.watchdogInterval
        try? await cancelWhenGracefulShutdown {
            while true {
                if interval != nil { ServiceManager.notify("WATCHDOG=1") }
                try await Task.sleep(for: interval ?? .seconds(3600))
            }
        }
        ServiceManager.notify("STOPPING=1")
        // The other services still finish their requests: keep the watchdog fed until the exit.
        if let interval {
            Task.detached {
                while true {
                    ServiceManager.notify("WATCHDOG=1")
                    try await Task.sleep(for: interval)
                }
            }
        }
    }
}
