import CallbackWaits
import Synchronization

/// Request/reply without dynamic reply nodes (RabbitMQ 3 has none): one reply subscription per
/// requester, each request tagged with `reply-to` and a fresh `correlation-id`, and its reply
/// matched by that id.
public final class AMQPRequester: Sendable {
    public let replyAddress: String
    private let connection: AMQPConnection
    private let receiver: AMQPReceiver
    private let pending = Mutex<[String: ResumeOnce<Result<AMQPMessage, AMQPError>>]>([:])
    private let counter = Mutex<UInt64>(0)

    /// Subscribes to `replyAddress` (unique to this requester) and starts matching replies.
    public init(connection: AMQPConnection, replyAddress: String, deadline: ContinuousClock.Instant) async throws(AMQPError) {
        self.connection = connection
        self.replyAddress = replyAddress
        receiver = try await connection.receiver(from: replyAddress, deadline: deadline)
        let replies = receiver.messages
        Task { [weak self] in
            for await reply in replies { self?.resolve(reply) }
        }
    }

    private func resolve(_ reply: AMQPMessage) {
        guard let id = reply.correlationID, let waiter = pending.withLock({ $0.removeValue(forKey: id) }) else { return }
        waiter.resume(.success(reply))
    }

    /// Sends `message` to `address` and waits for its reply, all before `deadline`.
    public func request(_ message: AMQPMessage, to address: String, deadline: ContinuousClock.Instant) async throws(AMQPError) -> AMQPMessage {
        var message = message
        let id = message.correlationID ?? counter.withLock { counter in
            counter += 1
            return "\(replyAddress)#\(counter)"
        }
        message.correlationID = id
        message.replyTo = replyAddress
        let outgoing = message
        let result: Result<AMQPMessage, AMQPError> = await CallbackWait.wait(until: deadline, expired: {
            .failure(AMQPError(.timedOut, "\(address): no reply before the deadline"))
        }) { once in
            pending.withLock { $0[id] = once }
            Task {
                do throws(AMQPError) {
                    try await connection.send(outgoing, to: address, deadline: deadline)
                } catch {
                    once.resume(.failure(error))
                }
            }
        }
        _ = pending.withLock { $0.removeValue(forKey: id) }
        return try result.get()
    }

    /// Ends the reply subscription.
    public func close() {
        connection.detach(receiver)
    }
}
