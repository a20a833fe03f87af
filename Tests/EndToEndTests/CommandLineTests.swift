import Foundation
import Synchronization
import Testing
import TestSupport

/// fence-routerd's command line and start-up checks, run as the real binary. Only loopback TCP
/// is used here, so no namespace is needed.
@Suite("fence-routerd command line")
struct CommandLineTests {
    let directory: TemporaryDirectory
    let key: String

    init() throws {
        directory = try TemporaryDirectory(prefix: "fr-cli")
        key = try directory.write("fence_xvm.key", bytes: RouterLab.testKey)
    }

    func configuration(port: Int? = nil, key: String? = nil, uri: String? = nil) throws -> String {
        let port = try port ?? freePort()
        let host = try directory.write("host.xml", HostXML.make(HostXML.generated(host: 1, prefix: "vm", count: 2)), mode: 0o644)
        return try directory.write("fence_virt.conf", """
            fence_virtd { listener = "tcp"; backend = "libvirt"; state_directory = "\(directory.path("state"))"; }
            listeners { tcp { key_file = "\(key ?? self.key)"; address = "127.0.0.1"; port = "\(port)"; } }
            backends { libvirt { uri = "\(uri ?? "test://\(host)")"; } }
            """)
    }

    func routerd(_ arguments: String...) async throws -> ProcessResult {
        try await Command.run([try Products.path("fence-routerd")] + arguments)
    }

    func freePort() throws -> Int { try Ports.freeTCP() }

    @Test("-h lists fence_virtd's options")
    func help() async throws {
        let result = try await routerd("-h")
        #expect(result.status == 0)
        for option in ["-F", "-f <file>", "-d <level>", "-p <file>", "-w", "-c", "-h"] {
            #expect(result.output.contains(option), "\(option) missing from: \(result.output)")
        }
    }

    @Test("--version: each program says the project's version and the commit of this checkout")
    func version() async throws {
        let head = try await Command.check(["git", "-C", Fixtures.repository.path, "rev-parse", "--short=12", "HEAD"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
        for program in ["fence-routerd", "fence-hostd", "fencectl"] {
            let result = try await Command.run([try Products.path(program), "--version"])
            #expect(result.status == 0, "\(result)")
            let line = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(line.hasPrefix("\(program) "), "\(result)")
            #expect(line.range(of: #"^\S+ \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(-dirty)?\)$"#, options: .regularExpression) != nil, "\(line)")
            #expect(line.contains("(commit \(head)"), "built from this checkout: \(line)")
        }
    }

    @Test("a broken configuration is refused with its file, line and key")
    func brokenConfiguration() async throws {
        let path = try directory.write("broken.conf", "fence_virtd {\n\tlistener = \"multicast\";\n\tbackend = \"libvirt\";\n}\nlisteners {\n\tmulticast {\n\t\tport = \"99999\";\n\t}\n}\nbackends { libvirt { uri = \"test:///default\"; } }\n")
        let result = try await routerd("-F", "-f", path)
        #expect(result.status == 1)
        #expect(result.error.contains("\(path):7: listeners/multicast/port: \"99999\" is not a whole number in 1…65535"), "\(result)")

        let missing = try await routerd("-F", "-f", directory.path("nowhere.conf"))
        #expect(missing.status == 1)
        #expect(missing.error.contains("nowhere.conf: cannot read the file: No such file or directory"), "\(missing)")
    }

    @Test("the key file must exist and be 0600 or stricter")
    func keyFileChecks() async throws {
        let open = try directory.write("open.key", bytes: RouterLab.testKey, mode: 0o644)
        let wide = try await routerd("-F", "-f", configuration(key: open))
        #expect(wide.status == 1)
        #expect(wide.error.contains("has mode 644; it must be 0600 or stricter: chmod 600 \(open)"), "\(wide)")

        let absent = try await routerd("-F", "-f", configuration(key: directory.path("absent.key")))
        #expect(absent.status == 1)
        #expect(absent.error.contains("absent.key (set at"), "\(absent)")
        #expect(absent.error.contains("No such file or directory"), "\(absent)")
    }

    @Test("an unreachable backend stops the start, naming -w")
    func unreachableBackend() async throws {
        let result = try await routerd("-F", "-f", configuration(uri: "test:///nowhere/host.xml"))
        #expect(result.status == 1)
        #expect(result.error.contains("cannot reach test:///nowhere/host.xml"), "\(result)")
        #expect(result.error.contains("-w"), "\(result)")
    }

    @Test("two daemons never share a state directory: the second stops, naming it")
    func stateDirectoryInUse() async throws {
        let first = try ChildProcess(
            [try Products.path("fence-routerd"), "-F", "-f", configuration()],
            logFile: directory.url.appendingPathComponent("first.log")
        )
        try await first.waitForLog("[FenceServer] listening")
        let second = try await routerd("-F", "-f", configuration())
        #expect(second.status == 1)
        #expect(second.error.contains("state_directory \(directory.path("state")) is in use by another fence-routerd"), "\(second)")
        await first.stop()
    }

    @Test("with -w it waits for the backend instead of exiting")
    func waitsForBackend() async throws {
        let daemon = try ChildProcess(
            [try Products.path("fence-routerd"), "-F", "-w", "-f", configuration(uri: "test:///nowhere/host.xml")],
            logFile: directory.url.appendingPathComponent("wait.log")
        )
        try await daemon.waitForLog("waiting for the backend")
        #expect(daemon.isRunning)
        await daemon.stop()
    }

    @Test("without -F it detaches with no signal blocked, reports ready, writes its pid file, and refuses a second instance")
    func detaches() async throws {
        let conf = try configuration()
        let pidPath = directory.path("fence-routerd.pid")
        let first = try await routerd("-f", conf, "-p", pidPath)
        #expect(first.status == 0, "\(first)")
        let pid = try #require(Int32(String(contentsOfFile: pidPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGKILL) }
        #expect(kill(pid, 0) == 0)
        #expect(try String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8).hasPrefix("fence-routerd"))
        // The main thread's signal mask: none blocked (it was spawned from a thread that blocks them all).
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.split(separator: "\n").contains("SigBlk:\t0000000000000000"), "\(status)")

        let second = try await routerd("-f", conf, "-p", pidPath)
        #expect(second.status == 1)
        #expect(second.error.contains("already running as process \(pid)"), "\(second)")

        kill(pid, SIGTERM)
        let limit = ContinuousClock.now + .seconds(10)
        while kill(pid, 0) == 0 && ContinuousClock.now < limit { try await Task.sleep(for: .milliseconds(20)) }
        #expect(kill(pid, 0) != 0, "the daemon stopped on SIGTERM")
        #expect(!FileManager.default.fileExists(atPath: pidPath), "and removed its pid file")
    }

    @Test("-c with piped answers writes a file the daemon then starts with")
    func configures() async throws {
        let path = directory.path("configured.conf")
        let host = try directory.write("host.xml", HostXML.make(HostXML.generated(host: 1, prefix: "vm", count: 2)), mode: 0o644)
        let port = try freePort()
        let answers = ["y", "", "tcp", "127.0.0.1", "\(port)", key, "libvirt", "test://\(host)", "y"]
        let configured = try await Command.run([try Products.path("fence-routerd"), "-c", "-f", path], input: answers.joined(separator: "\n") + "\n")
        #expect(configured.status == 0, "\(configured)")

        let pidPath = directory.path("configured.pid")
        let started = try await routerd("-f", path, "-p", pidPath)
        #expect(started.status == 0, "the daemon reported ready with the written file: \(started)")
        let pid = try #require(Int32(String(contentsOfFile: pidPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGTERM)
        let limit = ContinuousClock.now + .seconds(10)
        while kill(pid, 0) == 0 && ContinuousClock.now < limit { try await Task.sleep(for: .milliseconds(20)) }
        #expect(kill(pid, 0) != 0)
    }

    @Test("under systemd (Type=notify): READY once it serves, WATCHDOG at half WatchdogSec, STOPPING on SIGTERM")
    func notifiesServiceManager() async throws {
        let socket = try NotifySocket(path: directory.path("notify"))
        let daemon = try ChildProcess(
            [try Products.path("fence-routerd"), "-F", "-f", configuration()],
            logFile: directory.url.appendingPathComponent("notify.log"),
            environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "400000"]
        )
        // The socket is read all along, as systemd reads it: it queues only ten datagrams, and
        // once they are not read the daemon drops what it sends (it never waits for its manager).
        try await waitUntil("READY and three watchdog ticks", within: .seconds(30)) { socket.messages.filter { $0 == "WATCHDOG=1" }.count >= 3 }
        #expect(socket.messages.first == "READY=1", "\(socket.messages)\n\(daemon.log)")
        let status = await daemon.stop(timeout: .seconds(30))
        try await waitUntil("STOPPING", within: .seconds(10)) { socket.messages.contains("STOPPING=1") }
        #expect(status == 0)
    }

    @Test("SIGHUP: a rotated key and new access groups apply while serving; a broken file changes nothing; a moved listener waits for a restart")
    func reloadsOnHangup() async throws {
        let port = try freePort()
        let conf = try configuration(port: port)
        let daemon = try ChildProcess([try Products.path("fence-routerd"), "-F", "-f", conf], logFile: directory.url.appendingPathComponent("reload.log"))
        try await daemon.waitForLog("] ready")
        func reloads() -> Int { daemon.log.components(separatedBy: "configuration reloaded").count - 1 }
        func waitForReload(_ count: Int) async throws {
            let limit = ContinuousClock.now + .seconds(10)
            while reloads() < count && ContinuousClock.now < limit { try await Task.sleep(for: .milliseconds(20)) }
            #expect(reloads() == count, "\(daemon.log)")
        }
        func status() async throws -> ProcessResult {
            try await Command.run([try Products.path("fencectl"), "fence", "vm1", "--action", "status", "-f", conf, "--timeout", "5"])
        }
        #expect(try await status().status == 0)

        // Rotate the key: until the reload, the router still holds the old one.
        try FileManager.default.removeItem(atPath: key)
        _ = try directory.write("fence_xvm.key", bytes: Array("a rotated key, 32 bytes or more..".utf8))
        #expect(try await status().status == 1)
        kill(daemon.pid, SIGHUP)
        try await waitForReload(1)
        #expect(try await status().status == 0, "\(daemon.log)")

        // An access group that leaves vm1 out: permission denied (3) once reloaded.
        let text = try String(contentsOfFile: conf, encoding: .utf8)
        try (text + "groups { group { ip = \"127.0.0.1\"; uuid = \"vm2\"; } }\n").write(toFile: conf, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        try await waitForReload(2)
        #expect(try await status().status == 3, "\(daemon.log)")

        try (text + "broken {\n").write(toFile: conf, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        try await daemon.waitForLog("configuration not reloaded; the running one stays")
        try (text + "groups { group { ip = \"127.0.0.1\"; uuid = \"vm2\"; } }\n").write(toFile: conf, atomically: true, encoding: .utf8)
        #expect(try await status().status == 3, "the broken file changed nothing")

        try text.replacingOccurrences(of: "port = \"\(port)\"", with: "port = \"\(try freePort())\"").write(toFile: conf, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        try await daemon.waitForLog("restart-needed=listeners,keys")
        #expect(daemon.isRunning)
        #expect(await daemon.stop() == 0)
    }

    @Test("a detached start that fails reports the failure and exits 1")
    func detachedFailure() async throws {
        let result = try await routerd("-f", configuration(key: directory.path("absent.key")))
        #expect(result.status == 1)
        #expect(result.error.contains("absent.key"), "\(result)")
    }
}

/// The datagram socket a service manager offers in `$NOTIFY_SOCKET`, read on a thread of its own
/// from the start, as a service manager reads it.
final class NotifySocket: Sendable {
    let path: String
    private let inbox = Inbox()

    private final class Inbox: Sendable {
        let received = Mutex<[String]>([])
        let open = Atomic(true)
    }

    init(path: String) throws {
        self.path = path
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard descriptor >= 0, bound == 0 else {
            close(descriptor)
            throw CocoaError(.fileWriteUnknown)
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let inbox = inbox
        Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while inbox.open.load(ordering: .relaxed) {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count > 0 { inbox.received.withLock { $0.append(String(decoding: buffer[..<count], as: UTF8.self)) } }
            }
            close(descriptor)
        }.start()
    }

    deinit { inbox.open.store(false, ordering: .relaxed) }

    /// Everything received so far, in order.
    var messages: [String] { inbox.received.withLock { $0 } }
}
