import CallbackWaits
import Synchronization

/// Request/reply without dynamic reply nodes (RabbitMQ 3 has none): one reply subscription per
/// requester, each request tagged with `reply-to` and a fresh `correlation-id`, and its reply
/// matched by that id. Replies are matched while `run()` runs.
public final class AMQPRequester: Sendable {
    public let replyAddress: String
    private let connection: AMQPConnection
    private let receiver: AMQPReceiver
    private let pending = Mutex<[String: ReplySlot]>([:])
    private let counter = Mutex<UInt64>(0)
    /// Unique to this requester: a late reply to a request of an earlier run of the process (the
    /// same reply address, a counter started again) never matches a request of this one.
    private let instance = UInt64.random(in: 1 ... .max)

    /// Subscribes to `replyAddress` (unique to this requester).
    public init(connection: AMQPConnection, replyAddress: String, deadline: ContinuousClock.Instant) async throws(AMQPError) {
        self.connection = connection
        self.replyAddress = replyAddress
        receiver = try await connection.receiver(from: replyAddress, deadline: deadline)
    }

    /// Matches replies to their requests until cancelled or `close()`.
    public func run() async {
        for await reply in receiver.messages {
            guard let id = reply.correlationID, let slot = pending.withLock({ $0[id] }) else { continue }
            slot.deliver(reply)
        }
    }

    /// Sends `message` to `address` and waits for its reply, all before `deadline`.
    public func request(_ message: AMQPMessage, to address: String, deadline: ContinuousClock.Instant) async throws(AMQPError) -> AMQPMessage {
        var message = message
        let id = message.correlationID ?? counter.withLock { counter in
            counter += 1
            return "\(replyAddress)#\(String(instance, radix: 36))-\(counter)"
        }
        message.correlationID = id
        message.replyTo = replyAddress
        // Waiting before the message leaves: the reply may come back before `send` returns.
        let slot = ReplySlot()
        pending.withLock { $0[id] = slot }
        defer { _ = pending.withLock { $0.removeValue(forKey: id) } }
        do {
            try await connection.send(message, to: address, deadline: deadline)
        } catch {
            // The settlement was lost, not necessarily the message: a reply already here counts.
            guard let reply = slot.early else { throw error }
            return reply
        }
        let result: Result<AMQPMessage, AMQPError> = await CallbackWait.wait(until: deadline, expired: {
            .failure(AMQPError(.timedOut, "\(address): no reply before the deadline"))
        }) { once in
            slot.attach(once)
        }
        return try result.get()
    }

    /// Ends the reply subscription.
    public func close() {
        connection.detach(receiver)
    }
}

/// One request's reply: it may arrive before or after its requester starts waiting.
private final class ReplySlot: Sendable {
    private struct State {
        var reply: AMQPMessage?
        var waiter: ResumeOnce<Result<AMQPMessage, AMQPError>>?
    }

    private let state = Mutex(State())

    func deliver(_ reply: AMQPMessage) {
        let waiter = state.withLock { state in
            if state.waiter == nil, state.reply == nil { state.reply = reply }
            return state.waiter
        }
        waiter?.resume(.success(reply))
    }

    /// A reply that came before anyone waited for it.
    var early: AMQPMessage? { state.withLock { $0.reply } }

    func attach(_ waiter: ResumeOnce<Result<AMQPMessage, AMQPError>>) {
        let early = state.withLock { state in
            state.waiter = waiter
            return state.reply
        }
        if let early { waiter.resume(.success(early)) }
    }
}
