import Synchronization

/// Runs work for one key at a time, first come first served, while different keys run
/// concurrently: requests are serialised per VM, not globally as in the reference.
///
/// A waiter gives up at its deadline (or when its task is cancelled) and then never runs: a request
/// that waited too long is dropped, not executed late.
public final class KeyedSerializer<Key: Hashable & Sendable>: Sendable {
    private struct Waiter: Sendable {
        let id: UInt64
        let continuation: CheckedContinuation<Bool, Never>
    }

    private struct State: Sendable {
        /// A key is present while someone holds it; its array is the queue behind the holder.
        var queues: [Key: [Waiter]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Runs `body` once every earlier holder of `key` is done; nil if the deadline came first.
    public func withExclusiveAccess<T: Sendable, Failure: Error>(
        to key: Key,
        until deadline: ContinuousClock.Instant,
        _ body: () async throws(Failure) -> T
    ) async throws(Failure) -> T? {
        guard await acquire(key, until: deadline) else { return nil }
        defer { release(key) }
        return try await body()
    }

    /// How many keys are held right now (for tests and statistics).
    public var heldKeys: Int { state.withLock { $0.queues.count } }

    /// How many waiters are queued behind holders right now (for tests).
    var queuedWaiters: Int { state.withLock { $0.queues.values.reduce(0) { $0 + $1.count } } }

    private func acquire(_ key: Key, until deadline: ContinuousClock.Instant) async -> Bool {
        let id: UInt64? = state.withLock { state in
            if state.queues[key] == nil {
                state.queues[key] = []
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return true }
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            self?.abandon(key, id: id)
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // The answer now, or nil once queued.
                let answer = state.withLock { state -> Bool? in
                    // Cancelled or past the deadline before joining the queue: the cancellation
                    // handler or the timer ran before there was anything to remove. Checked under
                    // the lock, so one that comes later finds this waiter queued.
                    guard !Task.isCancelled, ContinuousClock.now < deadline else { return false }
                    guard state.queues[key] != nil else {
                        // Released between the first check and now: take it.
                        state.queues[key] = []
                        return true
                    }
                    state.queues[key]!.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            self.abandon(key, id: id)
        }
    }

    /// Removes a waiter that gives up; if it was still queued, it learns it was not granted.
    private func abandon(_ key: Key, id: UInt64) {
        let waiter: Waiter? = state.withLock { state in
            guard let index = state.queues[key]?.firstIndex(where: { $0.id == id }) else { return nil }
            return state.queues[key]!.remove(at: index)
        }
        waiter?.continuation.resume(returning: false)
    }

    private func release(_ key: Key) {
        let next: Waiter? = state.withLock { state in
            guard var queue = state.queues[key], !queue.isEmpty else {
                state.queues[key] = nil
                return nil
            }
            let next = queue.removeFirst()
            state.queues[key] = queue
            return next
        }
        next?.continuation.resume(returning: true)
    }
}
