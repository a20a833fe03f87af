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
/// and not yet granted back = `capacity`. Each link gets an epoch: credit computed for one link is
/// never granted on the next (after a reconnect the new link's credit already counts it).
///
/// With an inline consumer nothing waits here: each message goes to it on the proactor thread as
/// it arrives, and counts as consumed once it returns; the sequence then only waits for the end.
final class MessageBuffer: Sendable {
    private struct State {
        var queue: [AMQPMessage] = []
        var head = 0
        var waiter: CheckedContinuation<AMQPMessage?, Never>?
        /// Dropped when the subscription ends, and with it what the function holds.
        var inline: (@Sendable (AMQPMessage) -> Void)?
        var finished = false
        /// Consumed since credit was last granted for them.
        var ungranted = 0
        var epoch: UInt64 = 0
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

        /// One message went to the consumer: the credit to grant now, if a batch is full.
        mutating func consumed(capacity: Int) -> Grant? {
            ungranted += 1
            guard ungranted >= max(1, capacity / 2) else { return nil }
            defer { ungranted = 0 }
            return Grant(credit: ungranted, epoch: epoch)
        }
    }

    /// Credit to give back on the link of `epoch`.
    struct Grant: Equatable {
        let credit: Int
        let epoch: UInt64
    }

    let capacity: Int
    private let state: Mutex<State>
    /// Called (from whichever thread handed a message over) with credit to grant again, in batches
    /// of half the capacity.
    private let grant: @Sendable (Grant) -> Void

    init(capacity: Int, consumer: AMQPReceiver.Consumer = .sequence, grant: @escaping @Sendable (Grant) -> Void) {
        self.capacity = max(1, capacity)
        self.grant = grant
        var state = State()
        if case .inline(let handle) = consumer { state.inline = handle }
        self.state = Mutex(state)
    }

    /// Messages waiting for the consumer.
    var count: Int { state.withLock { $0.count } }

    /// Proactor thread: a message arrived.
    func deliver(_ message: AMQPMessage) {
        let capacity = self.capacity
        enum Taker { case inline(@Sendable (AMQPMessage) -> Void), waiter(CheckedContinuation<AMQPMessage?, Never>) }
        let (taker, credit) = state.withLock { state -> (Taker?, Grant?) in
            guard !state.finished else { return (nil, nil) }
            if let handle = state.inline { return (.inline(handle), state.consumed(capacity: capacity)) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (.waiter(waiter), state.consumed(capacity: capacity))
            }
            state.queue.append(message)
            return (nil, nil)
        }
        switch taker {
        case .inline(let handle)?: handle(message)
        case .waiter(let waiter)?: waiter.resume(returning: message)
        case nil: break
        }
        if let credit { grant(credit) }
    }

    /// Proactor thread: the credit a newly attached link starts with. The old link's credit died
    /// with it; what is still here or was consumed since is accounted for afresh, and grants
    /// computed for the old link are void.
    func creditForNewLink() -> Grant {
        state.withLock { state in
            state.ungranted = 0
            state.epoch += 1
            return Grant(credit: max(0, capacity - state.count), epoch: state.epoch)
        }
    }

    /// Proactor thread: whether a grant is for the link attached now.
    func isCurrent(_ epoch: UInt64) -> Bool { state.withLock { $0.epoch == epoch } }

    /// The subscription ended: the consumer gets what is here, then nil.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<AMQPMessage?, Never>? in
            state.finished = true
            state.inline = nil
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// One consumer at a time.
    func next() async -> AMQPMessage? {
        let capacity = self.capacity
        enum Ready { case popped(AMQPMessage, Grant?), ended, waiting }
        func take(_ state: inout State) -> Ready? {
            guard let message = state.pop() else { return nil }
            return .popped(message, state.consumed(capacity: capacity))
        }
        if case .popped(let message, let credit)? = state.withLock({ take(&$0) }) {
            if let credit { grant(credit) }
            return message
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Ready in
                    if let popped = take(&state) { return popped }
                    if state.finished || Task.isCancelled { return .ended }
                    precondition(state.waiter == nil, "an AMQP receiver's messages are for one consumer")
                    state.waiter = continuation
                    return .waiting
                }
                switch ready {
                case .popped(let message, let credit):
                    if let credit { grant(credit) }
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
}
