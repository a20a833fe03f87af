import FenceBus
import Synchronization

/// Remembers commands by id so that each runs once: a repeated id (a redelivery, a second
/// router) waits for, or gets at once, the first execution's result.
final class CommandLedger: Sendable {
    private enum Record {
        /// Running: a copy waits for this run.
        case running(Task<CommandResult, Never>)
        /// Answered: only the result is kept. A finished task keeps the memory its run used
        /// while anything holds it — 14 KB a command, measured, for ten minutes each.
        case answered(CommandResult)
    }

    private struct Entry {
        var record: Record
        let received: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var nextPurge: UInt64 = 0

        /// Forgets what is past its retention: every tenth of it, or at once when 4,096 are held.
        mutating func purge(now: UInt64, retention: UInt64) {
            guard entries.count >= 4096 || now >= nextPurge else { return }
            entries = entries.filter { $0.value.received + retention > now }
            nextPurge = now + retention / 10
        }
    }

    private let state = Mutex(State())
    /// How long (ms) an answered command is remembered; longer than any command's deadline.
    private let retention: UInt64

    init(retention: UInt64 = 600_000) {
        self.retention = retention
    }

    /// The result of command `id`, running `execute` only if no earlier copy did; `refusal`, not
    /// remembered, when no earlier copy did and this one must not run.
    func result(for id: String, now: UInt64, unlessNew refusal: CommandResult? = nil,
                execute: @escaping @Sendable () async -> CommandResult) async -> (CommandResult, repeated: Bool) {
        let answer = state.withLock { state -> Answer in
            switch state.entries[id]?.record {
            case .running(let run)?: return .runOf(run, first: false)
            case .answered(let result)?: return .now(result, repeated: true)
            case nil: break
            }
            if let refusal { return .now(refusal, repeated: false) }
            state.purge(now: now, retention: retention)
            let run = Task { await execute() }
            state.entries[id] = Entry(record: .running(run), received: now)
            return .runOf(run, first: true)
        }
        switch answer {
        case .now(let result, let repeated):
            return (result, repeated)
        case .runOf(let run, let first):
            let result = await run.value
            if first {
                state.withLock { state in
                    guard case .running(let current)? = state.entries[id]?.record, current == run else { return }
                    state.entries[id]?.record = .answered(result)
                }
            }
            return (result, !first)
        }
    }

    /// Commands remembered, and how many of them still hold their run (tests).
    var remembered: (total: Int, running: Int) {
        state.withLock { state in
            (state.entries.count, state.entries.values.count { if case .running = $0.record { true } else { false } })
        }
    }

    private enum Answer {
        case runOf(Task<CommandResult, Never>, first: Bool)
        case now(CommandResult, repeated: Bool)
    }
}
