import FenceBus
import Synchronization

/// Remembers commands by id so that each runs once: a repeated id (a redelivery, a second
/// router) waits for, or gets at once, the first execution's result.
final class CommandLedger: Sendable {
    private enum Record {
        /// Running: a copy waits for this run.
        case running(Task<CommandResult, Never>)
        /// Answered: only the result is kept. A finished task keeps the memory its run used
        /// while anything holds it: 14 KB a command, measured, for as long as it is remembered.
        case answered(CommandResult)
    }

    private struct Entry {
        var record: Record
        let received: ContinuousClock.Instant
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var nextPurge: ContinuousClock.Instant?
        /// Copies waiting for their command's run (tests).
        var waiting = 0

        /// Forgets answered commands past their retention: every tenth of it, or at once when
        /// 4,096 are held. A running one is kept, however long it takes.
        mutating func purge(now: ContinuousClock.Instant, retention: Duration) {
            guard entries.count >= 4096 || nextPurge.map({ now >= $0 }) ?? true else { return }
            entries = entries.filter { entry in
                if case .running = entry.value.record { return true }
                return now - entry.value.received < retention
            }
            nextPurge = now + retention / 10
        }
    }

    private let state = Mutex(State())
    /// How long an answered command is remembered: beyond the furthest deadline a command may
    /// carry, with a minute's margin, so that no copy can arrive in time to run once it is forgotten.
    /// Counted on the monotonic clock: a step of the wall clock forgets nothing early.
    private let retention: Duration

    init(retention: Duration = .milliseconds(FenceCommand.longestLifetime) + .seconds(60)) {
        self.retention = retention
    }

    /// The result of command `id`, running `execute` only if no earlier copy did; `refusal`, not
    /// remembered, when no earlier copy did and this one must not run.
    func result(for id: String, now: ContinuousClock.Instant, unlessNew refusal: CommandResult? = nil,
                execute: @escaping @Sendable () async -> CommandResult) async -> (CommandResult, repeated: Bool) {
        let answer = state.withLock { state -> Answer in
            switch state.entries[id]?.record {
            case .running(let run)?:
                state.waiting += 1
                return .runOf(run, first: false)
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
            state.withLock { state in
                guard first else { return state.waiting -= 1 }
                guard case .running(let current)? = state.entries[id]?.record, current == run else { return }
                state.entries[id]?.record = .answered(result)
            }
            return (result, !first)
        }
    }

    /// Commands remembered, how many of them still hold their run, and the copies waiting for one (tests).
    var remembered: (total: Int, running: Int, waiting: Int) {
        state.withLock { state in
            (state.entries.count, state.entries.values.count { if case .running = $0.record { true } else { false } }, state.waiting)
        }
    }

    private enum Answer {
        case runOf(Task<CommandResult, Never>, first: Bool)
        case now(CommandResult, repeated: Bool)
    }
}
