#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Testing
@testable import DaemonSupport

@Suite("logging to the journal")
struct JournalLogHandlerTests {
    func event(_ level: Logger.Level, _ message: Logger.Message, _ metadata: Logger.Metadata? = nil) -> LogEvent {
        LogEvent(level: level, message: message, metadata: metadata, source: "Test", file: #fileID, function: #function, line: #line)
    }

    @Test("each line carries its priority for journalctl -p, no timestamp of ours, the metadata sorted", arguments: [
        (Logger.Level.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
    ])
    func priorities(level: Logger.Level, priority: Int) {
        let line = SystemLogHandler.journalLine(handlerMetadata: ["router": "r1"], event: event(level, "request answered", ["op": "off", "domain": "vm1"]))
        #expect(line == "<\(priority)>\(level) domain=vm1 op=off router=r1 [Test] request answered\n", "tagged with the module that logged")
    }

    @Test("in the foreground on a terminal or a file, a line reads as swift-log's stream handler writes it, with the local time")
    func standardError() throws {
        let line = LogLine.stream(label: "fence-routerd", timestamp: "2026-12-06T15:15:33+0000", handlerMetadata: ["router": "r1"],
                                  event: event(.info, "request answered", ["op": "off", "domain": "vm1"]))
        #expect(line == "2026-12-06T15:15:33+0000 info fence-routerd: domain=vm1 op=off router=r1 [Test] request answered\n")
        #expect(LogLine.stream(label: "l", timestamp: "t", handlerMetadata: [:], event: event(.warning, "bare")) == "t warning l: [Test] bare\n")
        let stamp = LogLine.timestamp(1_796_570_165)
        #expect(stamp.utf8.count == 24, "\(stamp)")
        #expect(stamp.hasPrefix("2026-12-0"), "\(stamp)")
        #expect(stamp.dropFirst(19).allSatisfy { "+-0123456789".contains($0) }, "a numeric UTC offset: \(stamp)")
    }

    @Test("a message of several lines keeps its priority on each")
    func severalLines() {
        let line = SystemLogHandler.journalLine(handlerMetadata: [:], event: event(.error, "first\nsecond"))
        #expect(line == "<3>error [Test] first\n<3>second\n")
    }

    @Test("JOURNAL_STREAM counts only when it names the very stream: the variable alone, inherited, proves nothing")
    func detection() throws {
        let descriptor = open("/dev/null", O_WRONLY)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var status = stat()
        try #require(fstat(descriptor, &status) == 0)
        #expect(SystemLogHandler.isJournal(descriptor, environment: "\(status.st_dev):\(status.st_ino)"))
        #expect(!SystemLogHandler.isJournal(descriptor, environment: "\(status.st_dev):\(status.st_ino + 1)"))
        #expect(!SystemLogHandler.isJournal(descriptor, environment: nil))
        #expect(!SystemLogHandler.isJournal(descriptor, environment: "garbage"))
    }
}
