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

    /// The result of command `id`, running `execute` only if no earlier copy did; `refusal`, not
    /// remembered, when no earlier copy did and this one must not run.
    func result(for id: String, now: UInt64, unlessNew refusal: CommandResult? = nil,
                execute: @escaping @Sendable () async -> CommandResult) async -> (CommandResult, repeated: Bool) {
        let answer = entries.withLock { entries -> Answer in
            if let entry = entries[id] { return .runOf(entry.run, repeated: true) }
            if let refusal { return .now(refusal) }
            if entries.count >= 4096 {
                entries = entries.filter { $0.value.received + retention > now }
            }
            let run = Task { await execute() }
            entries[id] = Entry(run: run, received: now)
            return .runOf(run, repeated: false)
        }
        switch answer {
        case .runOf(let run, let repeated): return (await run.value, repeated)
        case .now(let result): return (result, false)
        }
    }

    private enum Answer {
        case runOf(Task<CommandResult, Never>, repeated: Bool)
        case now(CommandResult)
    }
}
