import Logging
import Synchronization
import Testing
import TestSupport
@testable import FenceRouter

/// Log lines made on the bus connection's thread, written by a task of their own.
@Suite("Log relay")
struct LogRelayTests {
    /// What reached the real handler, in order.
    final class Written: Sendable {
        let lines = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])
        var messages: [String] { lines.withLock { $0.map(\.message) } }

        func logger(level: Logger.Level = .info) -> Logger {
            var logger = Logger(label: "relay-test") { _ in Handler(written: self) }
            logger.logLevel = level
            logger[metadataKey: "router"] = "r1"
            return logger
        }

        struct Handler: LogHandler {
            let written: Written
            var metadata: Logger.Metadata = [:]
            var metadataProvider: Logger.MetadataProvider?
            var logLevel: Logger.Level = .info
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                let all = metadata.merging(event.metadata ?? [:]) { $1 }
                written.lines.withLock { $0.append((event.level, "\(event.message)", all)) }
            }
        }
    }

    @Test("lines wait for the relay's task and reach the logger's handler in order, with its metadata, the relayed logger's and their own, at its level; finish lets the task write what waits and return")
    func relayed() async {
        let written = Written()
        let target = written.logger(level: .notice)
        let relay = LogRelay(logger: target)
        var relayed = relay.relaying(target)
        #expect(relayed.logLevel == .notice)
        relayed[metadataKey: "host"] = "hv0"
        relayed[metadataKey: "kind"] = "delta"
        relayed.notice("learned a host", metadata: ["host": "hv1"])
        relayed.info("below the logger's level")
        relayed.warning("inventory message ignored")
        #expect(written.messages.isEmpty, "nothing is written on the caller's thread")
        relay.finish()
        await relay.run()
        #expect(written.messages == ["learned a host", "inventory message ignored"])
        let first = written.lines.withLock { $0.first }
        #expect(first?.level == .notice)
        #expect(first?.metadata["router"] == "r1", "the target's own metadata")
        #expect(first?.metadata["host"] == "hv1", "the line's value over the relayed logger's")
        #expect(first?.metadata["kind"] == "delta")
        relayed.notice("after the end")
        #expect(written.messages.last == "after the end", "written where it is made once the relay has finished")
    }

    @Test("beyond its capacity, lines are counted and the count is logged after those kept; audit lines are always kept")
    func overflow() async {
        let written = Written()
        let target = written.logger()
        let relay = LogRelay(capacity: 2, logger: target)
        let relayed = relay.relaying(target)
        for index in 1...5 { relayed.info("line \(index)") }
        relayed.notice("operator statement about a host", metadata: ["audit": "true"])
        relay.finish()
        await relay.run()
        #expect(written.messages == ["line 1", "line 2", "operator statement about a host", "log lines dropped: more were waiting than the relay holds"])
        #expect(written.lines.withLock { $0.last?.metadata["dropped"] } == "3")
    }

    @Test("once the relay's task was cancelled, lines are written where they are made, not kept")
    func cancelled() async throws {
        let written = Written()
        let target = written.logger()
        let relay = LogRelay(logger: target)
        let relayed = relay.relaying(target)
        let task = Task { await relay.run() }
        relayed.info("one")
        try await waitUntil("the task wrote the first line") { written.messages == ["one"] }
        task.cancel()
        await task.value
        relayed.info("two")
        #expect(written.messages == ["one", "two"])
    }
}
