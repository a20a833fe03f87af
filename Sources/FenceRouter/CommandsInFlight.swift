import Metrics
import Synchronization

/// The commands waiting for their hosts' answers: gauged, and told when to send a copy again —
/// when this router's connection or a host's came back, a command or its answer may have been
/// lost with the broker node that held it. The agent runs a command id once and answers every
/// copy with that one result, and a copy names the agent's run its first copy went to, which a
/// restarted agent refuses: a copy never acts twice. Ten copies per command at most, whatever a
/// host publishes (a command lives 20 s by default; hosts publish a snapshot every 5 s).
final class CommandsInFlight: Sendable {
    enum Reason: String, Sendable {
        /// This router reconnected: answers sent to its old subscription are gone.
        case routerReconnected = "router-reconnected"
        /// The host published a snapshot, as it does after reconnecting: its subscription is
        /// back, and commands sent while it was away were dropped.
        case hostSnapshot = "host-snapshot"
    }

    private struct Waiting {
        let host: String
        let signal: AsyncStream<Void>.Continuation
        var copies = 0
    }

    private static let mostCopies = 10

    private let waiting = Mutex<(next: UInt64, byToken: [UInt64: Waiting])>((0, [:]))

    /// Signals for one command to `host`, until `unregister`.
    func register(_ host: String) -> (token: UInt64, signals: AsyncStream<Void>) {
        let (signals, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let token = waiting.withLock { waiting in
            waiting.next += 1
            waiting.byToken[waiting.next] = Waiting(host: host, signal: continuation)
            // Under the lock: gauged in the order the count changed.
            Gauge(label: "fence_commands_in_flight").record(waiting.byToken.count)
            return waiting.next
        }
        return (token, signals)
    }

    func unregister(_ token: UInt64) {
        let removed = waiting.withLock { waiting in
            defer { Gauge(label: "fence_commands_in_flight").record(waiting.byToken.count) }
            return waiting.byToken.removeValue(forKey: token)
        }
        removed?.signal.finish()
    }

    /// Has every command waiting for `host` (or for any host, without one) sent again, unless it
    /// went ten times already; returns how many.
    @discardableResult
    func signal(_ reason: Reason, host: String? = nil) -> Int {
        let signals = waiting.withLock { waiting in
            var due: [AsyncStream<Void>.Continuation] = []
            for (token, command) in waiting.byToken where (host == nil || command.host == host) && command.copies < Self.mostCopies {
                waiting.byToken[token]?.copies += 1
                due.append(command.signal)
            }
            return due
        }
        for signal in signals { signal.yield() }
        if !signals.isEmpty {
            Counter(label: "fence_commands_resent_total", dimensions: [("reason", reason.rawValue)]).increment(by: signals.count)
        }
        return signals.count
    }
}
