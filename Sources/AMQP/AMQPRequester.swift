import CallbackWaits
import Synchronization

/// Request/reply without dynamic reply nodes (RabbitMQ 3 has none): one reply subscription per
/// requester, each request tagged with `reply-to` and a fresh `correlation-id`, and its reply
/// matched by that id, on the connection's thread as it arrives (no task woken in between: the
/// waiting request is resumed at once), until `close()`.
public final class AMQPRequester: Sendable {
    public let replyAddress: String
    private let connection: AMQPConnection
    private let receiver: AMQPReceiver
    private let pending: PendingReplies
    private let counter = Mutex<UInt64>(0)
    /// Unique to this requester: a late reply to a request of an earlier run of the process (the
    /// same reply address, a counter started again) never matches a request of this one.
    private let instance = UInt64.random(in: 1 ... .max)

    /// Subscribes to `replyAddress` (unique to this requester).
    public init(connection: AMQPConnection, replyAddress: String, deadline: ContinuousClock.Instant) async throws(AMQPError) {
        self.connection = connection
        self.replyAddress = replyAddress
        let pending = PendingReplies()
        self.pending = pending
        receiver = try await connection.receiver(from: replyAddress, consumer: .inline { reply in
            guard let id = reply.correlationID, let slot = pending.slots.withLock({ $0[id] }) else { return }
            slot.deliver(reply)
        }, deadline: deadline)
    }

    /// Sends `message` to `address` and waits for its reply, all before `deadline`.
    public func request(_ message: AMQPMessage, to address: String, deadline: ContinuousClock.Instant) async throws(AMQPError) -> AMQPMessage {
        try await request(to: address, deadline: deadline, accepting: { $0 }) { (_: Int) throws(AMQPError) in message }
    }

    /// Sends the message `copy(0)` makes and waits for a reply, all before `deadline`; each time
    /// `resend` yields, sends the next copy (`copy(1)`, …), and the first reply to any copy that
    /// `accept` takes answers. For a request or reply that a connection may have lost — a node of
    /// the broker died with the queue it sat in — when the receiver answers every copy of one
    /// request with the one result.
    ///
    /// A reply answers only if `accept` makes a value of it (called on the connection's thread as
    /// the reply arrives: it must not wait); one it refuses leaves the request waiting, so that
    /// anyone who can send to the reply address and guess a correlation id cannot end a request
    /// early with a reply that is not its answer.
    public func request<Reply: Sendable>(to address: String, deadline: ContinuousClock.Instant, resendingOn resend: AsyncStream<Void>? = nil,
                                         accepting accept: @escaping @Sendable (AMQPMessage) -> Reply?,
                                         _ copy: @escaping @Sendable (Int) throws(AMQPError) -> AMQPMessage) async throws(AMQPError) -> Reply {
        let slot = ReplySlot(accepting: accept)
        defer { pending.slots.withLock { pending in for id in slot.ids { pending.removeValue(forKey: id) } } }
        do {
            try await send(copy(0), to: address, answeringTo: slot, deadline: deadline)
        } catch {
            // The settlement was lost, not necessarily the message: a reply already here counts.
            if let reply = slot.early { return reply }
            // Lost with the connection: a copy goes out when `resend` says the way is open again.
            guard resend != nil, error.code == .disconnected else { throw error }
        }
        let result = await withTaskGroup(of: Void.self) { group -> Result<Reply, AMQPError> in
            if let resend {
                group.addTask {
                    var number = 0
                    for await _ in resend {
                        number += 1
                        guard let message = try? copy(number) else { return }
                        try? await self.send(message, to: address, answeringTo: slot, deadline: deadline)
                    }
                }
            }
            defer { group.cancelAll() }
            return await CallbackWait.wait(until: deadline, expired: {
                .failure(AMQPError(.timedOut, "\(address): no reply before the deadline"))
            }, cancelled: {
                .failure(AMQPError(.cancelled, "\(address): cancelled while waiting for the reply"))
            }) { once in
                slot.attach(once)
            }
        }
        return try result.get()
    }

    /// Sends one copy under a correlation id of its own, whose reply goes to `slot`.
    private func send(_ message: AMQPMessage, to address: String, answeringTo slot: any ReplyTaking, deadline: ContinuousClock.Instant) async throws(AMQPError) {
        var message = message
        let id = message.correlationID ?? counter.withLock { counter in
            counter += 1
            return "\(replyAddress)#\(String(instance, radix: 36))-\(counter)"
        }
        message.correlationID = id
        message.replyTo = replyAddress
        // Waiting before the message leaves: the reply may come back before `send` returns.
        slot.expect(id)
        pending.slots.withLock { $0[id] = slot }
        try await connection.send(message, to: address, deadline: deadline, whenCancelled: .abandon)
    }

    /// Ends the reply subscription.
    public func close() {
        connection.detach(receiver)
    }
}

/// The requests waiting for a reply, by correlation id: shared with the reply subscription's consumer.
private final class PendingReplies: Sendable {
    let slots = Mutex<[String: any ReplyTaking]>([:])
}

/// What the reply subscription hands a reply to, whatever the request makes of it.
private protocol ReplyTaking: AnyObject, Sendable {
    func expect(_ id: String)
    func deliver(_ message: AMQPMessage)
}

/// One request's reply: it may arrive before or after its requester starts waiting.
private final class ReplySlot<Reply: Sendable>: ReplyTaking {
    private struct State {
        var reply: Reply?
        var waiter: ResumeOnce<Result<Reply, AMQPError>>?
        /// The correlation ids of the request's copies.
        var ids: [String] = []
    }

    private let state = Mutex(State())
    private let accept: @Sendable (AMQPMessage) -> Reply?

    init(accepting accept: @escaping @Sendable (AMQPMessage) -> Reply?) {
        self.accept = accept
    }

    var ids: [String] { state.withLock { $0.ids } }

    func expect(_ id: String) {
        state.withLock { $0.ids.append(id) }
    }

    func deliver(_ message: AMQPMessage) {
        guard state.withLock({ $0.reply == nil }), let reply = accept(message) else { return }
        let waiter = state.withLock { state -> ResumeOnce<Result<Reply, AMQPError>>? in
            guard state.reply == nil else { return nil }
            state.reply = reply
            return state.waiter
        }
        waiter?.resume(.success(reply))
    }

    /// A reply that came before anyone waited for it.
    var early: Reply? { state.withLock { $0.reply } }

    func attach(_ waiter: ResumeOnce<Result<Reply, AMQPError>>) {
        let early = state.withLock { state in
            state.waiter = waiter
            return state.reply
        }
        if let early { waiter.resume(.success(early)) }
    }
}
