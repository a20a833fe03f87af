import Foundation

/// A command run to completion, with its output.
public struct ProcessResult: Sendable, CustomStringConvertible {
    public let arguments: [String]
    public let status: Int32
    public let output: String
    public let error: String

    public var description: String {
        "`\(arguments.joined(separator: " "))` exited \(status)\n  stdout: \(output)\n  stderr: \(error)"
    }
}

public struct CommandFailed: Error, CustomStringConvertible {
    public let result: ProcessResult
    public init(result: ProcessResult) { self.result = result }
    public var description: String { "command failed: \(result)" }
}

public enum Command {
    /// Runs a command and waits for it, with `input` (or nothing) on its stdin. Output goes
    /// through files, so a chatty command can never stall on a full pipe.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String]? = nil, input: String? = nil) async throws -> ProcessResult {
        try await offThePool { try runBlocking(arguments, environment: environment, input: input) }
    }

    private static func runBlocking(_ arguments: [String], environment: [String: String]?, input: String?) throws -> ProcessResult {
        let scratch = try TemporaryDirectory(prefix: "fr-cmd")
        let output = scratch.path("out")
        let error = scratch.path("err")
        var stdin = "/dev/null"
        if let input {
            stdin = scratch.path("in")
            try input.write(toFile: stdin, atomically: false, encoding: .utf8)
        }
        let pid = try Spawn.start(arguments, environment: environment, stdin: stdin, stdout: output, stderr: error)
        let status = Spawn.wait(pid, block: true) ?? -1
        return ProcessResult(
            arguments: arguments,
            status: status,
            output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "",
            error: (try? String(contentsOfFile: error, encoding: .utf8)) ?? ""
        )
    }

    /// Runs a command and throws unless it exits 0.
    @discardableResult
    public static func check(_ arguments: [String], environment: [String: String]? = nil) async throws -> ProcessResult {
        let result = try await run(arguments, environment: environment)
        guard result.status == 0 else { throw CommandFailed(result: result) }
        return result
    }
}

/// A long-running process (a daemon under test), its output in a log file, stopped on request.
public final class ChildProcess: @unchecked Sendable {
    public let arguments: [String]
    public let logFile: URL
    public let pid: pid_t
    private var exitStatus: Int32?

    public init(_ arguments: [String], logFile: URL, environment: [String: String]? = nil) throws {
        self.arguments = arguments
        self.logFile = logFile
        pid = try Spawn.start(arguments, environment: environment, stdout: logFile.path, stderr: logFile.path)
    }

    public var isRunning: Bool {
        if exitStatus == nil { exitStatus = Spawn.wait(pid, block: false) }
        return exitStatus == nil
    }

    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Sends a signal and waits up to `timeout` for the exit; then kills it. Returns the exit status
    /// (128 + signal when killed by one).
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) async -> Int32 {
        if isRunning { kill(pid, signal) }
        let limit = ContinuousClock.now + timeout
        while isRunning && ContinuousClock.now < limit { try? await Task.sleep(for: .milliseconds(5)) }
        return killNow()
    }

    /// Kills the process if it still runs and reaps it (SIGKILL takes effect at once).
    @discardableResult
    private func killNow() -> Int32 {
        if isRunning {
            kill(pid, SIGKILL)
            exitStatus = Spawn.wait(pid, block: true)
        }
        return exitStatus ?? -1
    }

    /// Waits until the log contains `text`, or throws after `timeout` with the log attached.
    public func waitForLog(_ text: String, timeout: Duration = .seconds(20)) async throws {
        try await waitForLog(anyOf: [text], timeout: timeout)
    }

    /// Waits until the log contains one of `texts`; returns the first one found.
    @discardableResult
    public func waitForLog(anyOf texts: [String], timeout: Duration = .seconds(20)) async throws -> String {
        let limit = ContinuousClock.now + timeout
        while true {
            let log = self.log
            if let found = texts.first(where: log.contains) { return found }
            guard isRunning, ContinuousClock.now < limit else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw WaitFailed(what: texts.map { "'\($0)'" }.joined(separator: " or ") + " in the log of \(arguments.joined(separator: " "))", log: log)
    }

    /// Waits until the process exits on its own; returns its status.
    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let limit = ContinuousClock.now + timeout
        while isRunning {
            guard ContinuousClock.now < limit else { throw WaitFailed(what: "the exit of \(arguments.joined(separator: " "))", log: log) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return exitStatus ?? -1
    }

    deinit { killNow() }
}

public struct WaitFailed: Error, CustomStringConvertible {
    public let what: String
    public let log: String
    public var description: String { "timed out waiting for \(what)\n--- log ---\n\(log)" }
}

/// A directory removed when the value goes away.
public final class TemporaryDirectory: @unchecked Sendable {
    public let url: URL

    private let owned: Bool

    public init(prefix: String) throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        owned = true
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// A directory someone else made and removes.
    public init(adopting url: URL) throws {
        self.url = url
        owned = false
    }

    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes a file (a name may hold directories, which are created).
    public func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
        try write(name, bytes: Array(text.utf8), mode: mode)
    }

    public func write(_ name: String, bytes: [UInt8], mode: Int = 0o600) throws -> String {
        let path = self.path(name)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw CocoaError(.fileWriteUnknown) }
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    deinit { if owned { try? FileManager.default.removeItem(at: url) } }
}
