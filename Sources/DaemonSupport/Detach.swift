#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Running in the background the way fence_virtd does without `-F`, without `fork()` (unsafe in a
/// multi-threaded Swift process): the program re-executes itself in a new session, and the parent
/// exits 0 only once the child says it serves, or prints the child's start-up error and exits 1.
public enum Detach {
    static let environmentKey = "FENCE_ROUTER_READY_FD"

    /// Set in a detached child: where to report readiness or failure.
    public static let readiness: ReadinessReport? = {
        guard let text = getenv(environmentKey), let descriptor = Int32(String(cString: text)) else { return nil }
        unsetenv(environmentKey)
        return ReadinessReport(descriptor: descriptor)
    }()

    /// Re-executes this program detached and waits for its report. Never returns.
    public static func intoBackground(program: String) -> Never {
        var descriptors: [Int32] = [0, 0]
        guard pipe(&descriptors) == 0 else { fail(program, "cannot create a pipe: \(SystemError.last)") }
        let (reader, writer) = (descriptors[0], descriptors[1])
        _ = fcntl(reader, F_SETFD, FD_CLOEXEC)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        for descriptor in Int32(0)...2 {
            posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        // A clean signal mask and default actions: the thread that spawns is one of the
        // concurrency runtime's, which block every signal, and the child would inherit its mask.
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, posixSpawnSetSID | Int16(POSIX_SPAWN_SETSIGMASK) | Int16(POSIX_SPAWN_SETSIGDEF))

        // The resolved path, not /proc/self/exe: the process name (comm) must stay the program's,
        // for pid-file checks and for ps.
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard readlink("/proc/self/exe", &path, path.count - 1) > 0 else { fail(program, "cannot find my own executable: \(SystemError.last)") }
        setenv(environmentKey, "\(writer)", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, &attributes, arguments, environ)
        arguments.forEach { free($0) }
        guard spawned == 0 else { fail(program, "cannot start in the background: \(SystemError(code: spawned))") }
        close(writer)

        var report: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            report += buffer[0..<count]
        }
        let text = String(decoding: report, as: UTF8.self)
        if text == ReadinessReport.readyMessage { exit(0) }
        fail(program, text.isEmpty ? "the background process exited during start-up (see the system log)" : text)
    }

    private static func fail(_ program: String, _ message: String) -> Never {
        StandardError.write("\(program): \(message)\n")
        exit(1)
    }
}

/// glibc's `POSIX_SPAWN_SETSID` (0x80), which Swift does not import because it is GNU-only.
private let posixSpawnSetSID: Int16 = 0x80

/// The detached child's side of the readiness pipe.
public struct ReadinessReport: Sendable {
    static let readyMessage = "ready"
    let descriptor: Int32

    public func ready() { send(Self.readyMessage) }

    public func failed(_ message: String) { send(message) }

    private func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = write(descriptor, bytes, bytes.count)
        close(descriptor)
    }
}
