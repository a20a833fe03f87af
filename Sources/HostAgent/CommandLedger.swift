import FenceBus
import Synchronization

/// Remembers commands by id so that each runs once: a repeated id (a redelivery, a second
/// router) waits for, or gets at once, the first execution's result.
final class CommandLedger: Sendable {
    private struct Entry {
        let run: Task<CommandResult, Never>
        let received: UInt64
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// How long (ms) an answered command is remembered; longer than any command's deadline.
    private let retention: UInt64

    init(retention: UInt64 = 600_000) {
        self.retention = retention
    }

    /// The result of command `id`, running `execute` only if no earlier copy did.
    func result(for id: String, now: UInt64, execute: @escaping @Sendable () async -> CommandResult) async -> (CommandResult, repeated: Bool) {
        let (run, repeated) = entries.withLock { entries in
            if let entry = entries[id] { return (entry.run, true) }
            if entries.count >= 4096 {
                entries = entries.filter { $0.value.received + retention > now }
            }
            let run = Task { await execute() }
            entries[id] = Entry(run: run, received: now)
            return (run, false)
        }
        return (await run.value, repeated)
    }
}
