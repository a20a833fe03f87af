import Synchronization

/// A continuation that the first of several racers resumes (a C thread's callback, a deadline);
/// later attempts are ignored.
public final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation = Mutex(continuation)
    }

    /// Whether the waiter was resumed already (its result is decided).
    public var isDone: Bool { continuation.withLock { $0 == nil } }

    /// Resumes the waiter with `value` unless something else already did; says whether it did.
    @discardableResult
    public func resume(_ value: T) -> Bool {
        let pending = continuation.withLock { slot in
            defer { slot = nil }
            return slot
        }
        pending?.resume(returning: value)
        return pending != nil
    }
}

/// Waiting for work done elsewhere (a blocking C call on another thread, a reply from a broker)
/// with a deadline, without blocking the caller's thread.
public enum CallbackWait {
    /// Calls `start` with a one-shot resumer and waits; at `deadline`, resumes with `expired()`
    /// unless `start`'s work resumed first.
    ///
    /// A deadline whose waiter was resumed is dropped unrun at the timer thread's next look
    /// (`Deadlines`); one that fires while the work answers finds the waiter resumed and does nothing.
    ///
    /// With `cancelled`, cancelling the waiting task resumes it at once with `cancelled()`; the
    /// work goes on, and finds the waiter resumed. Without it, the wait outlasts cancellation:
    /// for work whose end the caller must see (a libvirt call that may have acted).
    public static func wait<T: Sendable>(
        until deadline: ContinuousClock.Instant,
        expired: @escaping @Sendable () -> T,
        cancelled: (@Sendable () -> T)? = nil,
        _ start: (ResumeOnce<T>) -> Void
    ) async -> T {
        guard let cancelled else { return await waitOutlastingCancellation(until: deadline, expired: expired, start) }
        let waiter = Mutex<ResumeOnce<T>?>(nil)
        return await withTaskCancellationHandler {
            await waitOutlastingCancellation(until: deadline, expired: expired) { once in
                waiter.withLock { $0 = once }
                // Cancelled before the waiter was known: the handler found nothing to resume.
                if Task.isCancelled { once.resume(cancelled()) }
                start(once)
            }
        } onCancel: {
            waiter.withLock { $0 }?.resume(cancelled())
        }
    }

    private static func waitOutlastingCancellation<T: Sendable>(
        until deadline: ContinuousClock.Instant,
        expired: @escaping @Sendable () -> T,
        _ start: (ResumeOnce<T>) -> Void
    ) async -> T {
        await withCheckedContinuation { continuation in
            let once = ResumeOnce(continuation)
            Deadlines.shared.at(deadline, pending: { !once.isDone }) {
                // `expired` only for a waiter still waiting: it may act (rescue a stuck thread).
                if !once.isDone { once.resume(expired()) }
            }
            start(once)
        }
    }
}
