import Synchronization

/// The messages of one subscription, in arrival order, for one consumer. Link credit is granted as
/// messages are consumed, not as they arrive: a slow consumer holds at most `capacity` messages in
/// memory, and the broker keeps the rest (or, for a topic, drops them by its own limits).
public struct AMQPMessages: AsyncSequence, Sendable {
    public typealias Element = AMQPMessage

    let buffer: MessageBuffer

    public func makeAsyncIterator() -> Iterator { Iterator(buffer: buffer) }

    public struct Iterator: AsyncIteratorProtocol {
        let buffer: MessageBuffer

        /// The next message; nil once the subscription has ended (or the task was cancelled).
        public mutating func next() async -> AMQPMessage? { await buffer.next() }
    }
}

/// What the proactor thread hands over and the consumer takes, with the credit bookkeeping
/// between them: credit on the link + messages on their way + messages here + messages consumed
/// and not yet granted back = `capacity`.
final class MessageBuffer: Sendable {
    private struct State {
        var queue: [AMQPMessage] = []
        var head = 0
        var waiter: CheckedContinuation<AMQPMessage?, Never>?
        var finished = false
        /// Consumed since credit was last granted for them.
        var ungranted = 0
        var count: Int { queue.count - head }

        mutating func pop() -> AMQPMessage? {
            guard head < queue.count else { return nil }
            let message = queue[head]
            head += 1
            if head > 64, head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return message
        }
    }

    let capacity: Int
    private let state = Mutex(State())
    /// Called (from the consumer's task) with credit to grant again, in batches of half the capacity.
    private let grant: @Sendable (Int) -> Void

    init(capacity: Int, grant: @escaping @Sendable (Int) -> Void) {
        self.capacity = max(1, capacity)
        self.grant = grant
    }

    /// Messages waiting for the consumer.
    var count: Int { state.withLock { $0.count } }

    /// Proactor thread: a message arrived.
    func deliver(_ message: AMQPMessage) {
        let waiter = state.withLock { state -> CheckedContinuation<AMQPMessage?, Never>? in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.queue.append(message)
            return nil
        }
        if let waiter {
            waiter.resume(returning: message)
            consumed()
        }
    }

    /// Proactor thread: the credit a newly attached link starts with. The old link's credit died
    /// with it; what is still here or was consumed since is accounted for afresh.
    func creditForNewLink() -> Int {
        state.withLock { state in
            state.ungranted = 0
            return max(0, capacity - state.count)
        }
    }

    /// The subscription ended: the consumer gets what is here, then nil.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<AMQPMessage?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    func next() async -> AMQPMessage? {
        if let message = state.withLock({ $0.pop() }) {
            consumed()
            return message
        }
        enum Ready { case popped(AMQPMessage), ended, waiting }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Ready in
                    if let message = state.pop() { return .popped(message) }
                    if state.finished || Task.isCancelled { return .ended }
                    state.waiter = continuation
                    return .waiting
                }
                switch ready {
                case .popped(let message):
                    consumed()
                    continuation.resume(returning: message)
                case .ended:
                    continuation.resume(returning: nil)
                case .waiting:
                    break   // `deliver` or `finish` resumes it (and counts what it hands over)
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<AMQPMessage?, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    private func consumed() {
        let batch = state.withLock { state -> Int in
            state.ungranted += 1
            guard state.ungranted >= max(1, capacity / 2) else { return 0 }
            defer { state.ungranted = 0 }
            return state.ungranted
        }
        if batch > 0 { grant(batch) }
    }
}
