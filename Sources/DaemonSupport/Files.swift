#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceConfig
import FenceWire

/// A failed system call, described by its errno.
struct SystemError: Error, CustomStringConvertible {
    let code: Int32

    static var last: SystemError { SystemError(code: errno) }

    var description: String { String(cString: strerror(code)) }
}

/// Reads whole files with plain POSIX calls (no Foundation in the daemons' start-up path).
enum FileReader {
    static func read(_ path: String) throws(SystemError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .last }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            guard count >= 0 else { throw .last }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
        }
    }
}

enum FileWriter {
    /// Writes every byte, however many calls it takes.
    static func writeAll(_ bytes: [UInt8], to descriptor: Int32) throws(SystemError) {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { throw count < 0 ? .last : SystemError(code: EIO) }
            written += count
        }
    }
}

public enum ConfigurationFile {
    /// Reads and parses a `fence_virt.conf`; any problem names the file (and line and key).
    public static func load(_ path: String) throws(ConfigError) -> ConfigDocument {
        let bytes: [UInt8]
        do {
            bytes = try FileReader.read(path)
        } catch {
            throw ConfigError(code: .unreadable, file: path, line: 0, key: "", message: "cannot read the file: \(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(code: .unreadable, file: path, line: 0, key: "", message: "the file is not UTF-8 text")
        }
        return try ConfigDocument(parsing: text, file: path)
    }

    /// Replaces the file at once: the new text goes to a temporary file beside it (mode 0600, as
    /// `fence_virtd -c` writes it), reaches the disk, and is renamed over the old one, so a daemon
    /// starting meanwhile reads the old file or the new one, never half of one.
    public static func replace(_ path: String, with text: String) throws(StartupError) {
        var template = Array("\(path).XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw StartupError(.configuration, "cannot write beside \(path): \(SystemError.last)") }
        let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var failure: SystemError?
        do {
            try FileWriter.writeAll(Array(text.utf8), to: descriptor)
            if fchmod(descriptor, 0o600) != 0 || fsync(descriptor) != 0 { failure = .last }
        } catch {
            failure = error
        }
        if close(descriptor) != 0 { failure = failure ?? .last }
        if failure == nil, rename(temporary, path) != 0 { failure = .last }
        if let failure {
            unlink(temporary)
            throw StartupError(.configuration, "cannot write \(path): \(failure)")
        }
    }
}

public enum SecretFile {
    /// Reads a secret (a key, a password) that must exist, be a regular file and be readable by
    /// its owner only (0600 or stricter): a secret others can read is not one. We do not chmod it
    /// ourselves (the reference does); we say what to do.
    public static func read(_ path: String, what: String, origin: String, create: String? = nil) throws(StartupError) -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw StartupError(.keyFile, "\(what) \(path) (\(origin)): \(SystemError.last)\(create.map { "; create one with: \($0)" } ?? "")")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw StartupError(.keyFile, "\(what) \(path) (\(origin)) is not a regular file")
        }
        let permissions = info.st_mode & 0o777
        guard permissions & 0o177 == 0 else {
            throw StartupError(.keyFile, "\(what) \(path) (\(origin)) has mode \(String(permissions, radix: 8)); it must be 0600 or stricter: chmod 600 \(path)")
        }
        do {
            return try FileReader.read(path)
        } catch {
            throw StartupError(.keyFile, "\(what) \(path) (\(origin)): \(error)")
        }
    }
}

extension SecretFile {
    /// Writes a new secret readable by its owner only (0600). An existing file is never replaced:
    /// overwriting a key in use would lock every guest out.
    public static func create(_ path: String, contents: [UInt8]) throws(StartupError) {
        try NewFile.create(path, contents: contents, mode: 0o600)
    }
}

/// Files written once, never over an existing one.
public enum NewFile {
    /// Creates `path` with `mode`, writes `contents` and syncs them; removes it again on failure.
    public static func create(_ path: String, contents: [UInt8], mode: mode_t) throws(StartupError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            let error = SystemError.last
            throw StartupError(.keyFile, error.code == EEXIST ? "\(path) exists; not replacing it (remove it first if you mean to)" : "cannot create \(path): \(error)")
        }
        do {
            try FileWriter.writeAll(contents, to: descriptor)
        } catch {
            close(descriptor)
            unlink(path)
            throw StartupError(.keyFile, "cannot write \(path): \(error)")
        }
        let synced = fsync(descriptor) == 0
        let error = SystemError.last
        guard close(descriptor) == 0, synced else {
            unlink(path)
            throw StartupError(.keyFile, "cannot write \(path): \(error)")
        }
    }
}

public enum KeyFile {
    /// Loads a fence_xvm key (see `SecretFile`).
    public static func load(_ security: ListenerSecurity) throws(StartupError) -> FenceKey {
        let path = security.keyFile
        let bytes = try SecretFile.read(
            path, what: "key file", origin: security.keyFileLocation.map { "set at \($0)" } ?? "the default of key_file",
            create: "fencectl keygen \(path)"
        )
        return FenceKey(fileContents: bytes)
    }
}

/// The pid file of a running daemon, removed again when it stops.
public final class PidFile: Sendable {
    public let path: String

    /// Writes our pid, refusing when the file names another live process of the same program.
    public init(path: String, program: String) throws(StartupError) {
        self.path = path
        if let existing = try? FileReader.read(path),
           let pid = Int32(String(decoding: existing, as: UTF8.self).trimmingCharacters()),
           pid != getpid(), kill(pid, 0) == 0,
           let name = try? FileReader.read("/proc/\(pid)/comm"),
           String(decoding: name, as: UTF8.self).trimmingCharacters() == String(program.prefix(15)) {
            throw StartupError(.pidFile, "\(program) is already running as process \(pid) (pid file \(path))")
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw StartupError(.pidFile, "pid file \(path): \(SystemError.last)") }
        defer { close(descriptor) }
        let text = Array("\(getpid())\n".utf8)
        guard write(descriptor, text, text.count) == text.count else {
            throw StartupError(.pidFile, "pid file \(path): \(SystemError.last)")
        }
    }

    public func remove() {
        unlink(path)
    }
}

extension StringProtocol {
    /// Without leading and trailing white space (no Foundation here): what a secret or pid file
    /// holds, whatever editor wrote it.
    public func trimmingCharacters() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// The daemon's state directory, made if missing (0700) and held for the daemon's life with an
/// exclusive lock: two daemons writing one journal would lose each other's records.
public final class StateDirectory: Sendable {
    public let path: String
    private let lock: Int32

    public init(_ path: String, program: String) throws(StartupError) {
        self.path = path
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
            throw StartupError(.configuration, "state_directory \(path): \(SystemError.last)")
        }
        let descriptor = open(path + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StartupError(.configuration, "state_directory \(path): \(SystemError.last)") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let detail = SystemError.last
            close(descriptor)
            throw StartupError(.configuration, busy
                ? "state_directory \(path) is in use by another \(program); give each daemon its own"
                : "state_directory \(path): \(detail)")
        }
        lock = descriptor
    }

    deinit { close(lock) }
}
