import Foundation

/// Starts a process with `posix_spawn`, the way a service manager would: an empty signal mask and
/// default signal actions. (Foundation's `Process` passes on the spawning thread's mask; test
/// runner threads block SIGTERM, and a daemon started that way never sees its stop signal.)
/// Nothing but stdin, stdout and stderr is passed on: SwiftNIO opens its sockets without
/// close-on-exec, and a broker or daemon started beside a test that holds one keeps the
/// connection open after the test closed it (its peer then waits for an end of stream until that
/// process exits: the unit tests of the request pipeline waited ~100 s in every CI run for the
/// brokers of the failover test).
enum Spawn {
    struct Failed: Error, CustomStringConvertible {
        let arguments: [String]
        let code: Int32
        var description: String { "cannot start \(arguments.joined(separator: " ")): \(String(cString: strerror(code)))" }
    }

    /// Starts `arguments` (found on PATH) with stdin from a file (/dev/null unless given) and
    /// stdout/stderr into files.
    static func start(_ arguments: [String], environment: [String: String]?, stdin: String = "/dev/null", stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard let closeFrom = Self.closeFrom else { throw Failed(arguments: arguments, code: ENOSYS) }
        let closing = closeFrom(&actions, 3)
        guard closing == 0 else { throw Failed(arguments: arguments, code: closing) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let merged = ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let code = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard code == 0 else { throw Failed(arguments: arguments, code: code) }
        return pid
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34), declared only under _GNU_SOURCE,
    /// which Swift's Glibc module does not set.
    /// Nil before glibc 2.34 (Debian 12 has 2.36).
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        // RTLD_DEFAULT is the null handle.
        dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
            unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
        }
    }()

    /// Waits for the process; nil if it is still running and `block` is false.
    static func wait(_ pid: pid_t, block: Bool) -> Int32? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, block ? 0 : WNOHANG)
        guard result == pid else { return result == 0 ? nil : -1 }
        // Exit status, or 128 + signal as a shell reports it.
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }
}
