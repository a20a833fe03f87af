import AMQP
import DropReporting
import FenceBus
import Logging
import Synchronization

/// Where bus messages go: the broker addresses, named once for routers and agents.
public struct BusAddresses: Sendable {
    public let profile: AddressProfile

    public init(profile: AddressProfile) {
        self.profile = profile
    }

    /// Every agent's snapshots, deltas and heartbeats, for every router.
    public var inventory: String { profile.address("fence.inventory") }
    /// One host's commands.
    public func commands(for host: String) -> String { profile.address("fence.commands.\(host)") }
    /// One router's replies.
    public func replies(for router: String) -> String { profile.address("fence.reply.\(router)") }
}

/// Whom a message is sealed for.
public enum BusReceivers: Hashable, Sendable {
    /// Every router in the trust directory: a host's inventory (and an operator's statement,
    /// which is signed for anyone instead).
    case everyRouter
    /// One daemon: the host of a command or snapshot request, the router a result answers.
    case one(String)
}

/// One side of the bus over an AMQP connection: seals and publishes messages as its identity, opens
/// and checks received ones (dropping, logging and counting those with a bad MAC, an untrusted
/// signer, a stale time or a replayed id).
public final class BusEndpoint: Sendable {
    /// Who this endpoint sends and receives as.
    public let identity: BusIdentity
    public let connection: AMQPConnection
    public let addresses: BusAddresses
    private let codec: BusCodec
    private let trust: any BusTrust
    private let replayGuard: Mutex<ReplayGuard>
    private let ids = Mutex<UInt64>(0)
    private let instance: String
    private let dropped = Mutex<[String: Int]>([:])
    /// The log of dropped messages: run it as a service, so that each interval's drops beyond the
    /// first of each reason are summed up (a broker account flooding forged messages costs a few lines).
    public let drops: DropLog<BusError.Code>
    private let logger: Logger

    public init(identity: BusIdentity, connection: AMQPConnection, addresses: BusAddresses, key: BusKey, trust: any BusTrust,
                clockTolerance: Duration, logger: Logger) {
        self.identity = identity
        self.connection = connection
        self.addresses = addresses
        codec = BusCodec(key: key, trust: trust)
        self.trust = trust
        let (seconds, attoseconds) = clockTolerance.components
        replayGuard = Mutex(ReplayGuard(tolerance: UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000)))
        instance = String(WallClock.now(), radix: 36)
        drops = DropLog(event: "dropped bus message", summary: "dropped bus messages in the last interval", logger: logger)
        self.logger = logger
    }

    /// The name this endpoint signs as.
    public var sender: String { identity.name }

    /// A message id unique across this process's restarts.
    public func nextID() -> String {
        let number = ids.withLock { counter in
            counter += 1
            return counter
        }
        return "\(sender)-\(instance)-\(number)"
    }

    /// Seals `message` and sends it; returns once the broker accepted it.
    public func publish(_ message: BusMessage, to address: String, for receivers: BusReceivers, timeToLive: Duration? = nil,
                        deadline: ContinuousClock.Instant) async throws(AMQPError) {
        try await connection.send(amqpMessage(message, for: receivers, timeToLive: timeToLive), to: address, deadline: deadline)
    }

    /// The AMQP form of a bus message.
    public func amqpMessage(_ message: BusMessage, for receivers: BusReceivers, correlationID: String? = nil,
                            timeToLive: Duration? = nil) throws(AMQPError) -> AMQPMessage {
        let names: [String] = switch receivers {
        case .everyRouter: message.signerRole == .operator ? [] : trust.names(role: .router)
        case .one(let name): [name]
        }
        let id = nextID()
        let sealed: SealedBusMessage
        do {
            sealed = try codec.seal(message, id: id, as: identity, for: names, now: WallClock.now())
        } catch {
            throw AMQPError(.invalidMessage, "cannot seal a \(message.kind): \(error.message)")
        }
        return AMQPMessage(
            body: sealed.body, messageID: id, correlationID: correlationID, contentType: SealedBusMessage.contentType,
            timeToLive: timeToLive, applicationProperties: sealed.properties
        )
    }

    /// Checks a received message; nil (logged and counted) when it must be dropped.
    public func open(_ message: AMQPMessage) -> BusEnvelope? {
        do throws(BusError) {
            let envelope = try codec.open(body: message.body, properties: message.applicationProperties, as: identity)
            try replayGuard.withLock { (guardian: inout ReplayGuard) throws(BusError) in try guardian.admit(envelope, now: WallClock.now()) }
            return envelope
        } catch {
            let count = dropped.withLock { counts in
                counts[error.code.rawValue, default: 0] += 1
                return counts[error.code.rawValue]!
            }
            // The source: the message id without its counter (`<sender>-<instance>`), as the sender wrote it.
            let id = message.messageID ?? "-"
            drops.note(error.code, source: String(id[..<(id.lastIndex(of: "-") ?? id.endIndex)].prefix(80)), metadata: [
                "detail": "\(error.message)", "amqp-id": "\(id.prefix(200))", "dropped-total": "\(count)",
            ])
            return nil
        }
    }

    /// Bus messages dropped so far, by reason.
    public var droppedCounts: [String: Int] { dropped.withLock { $0 } }

    /// Subscribes to `address`; the sequence carries only messages that passed the checks, and is
    /// read at the consumer's pace (link credit is granted as it takes messages).
    public func subscribe(_ address: String, settlement: AMQPReceiver.Settlement = .clientAccepts,
                          deadline: ContinuousClock.Instant) async throws(AMQPError) -> BusSubscription {
        BusSubscription(messages: try await connection.receiver(from: address, settlement: settlement, deadline: deadline).messages, endpoint: self)
    }

    /// Subscribes to `address` with a function called on the connection's thread for each message
    /// that passed the checks, as it arrives (`AMQPReceiver.Consumer.inline`): it must not wait.
    public func subscribe(_ address: String, settlement: AMQPReceiver.Settlement = .clientAccepts, deadline: ContinuousClock.Instant,
                          inline handle: @escaping @Sendable (BusEnvelope) -> Void) async throws(AMQPError) -> BusInlineSubscription {
        let receiver = try await connection.receiver(from: address, settlement: settlement, consumer: .inline { [weak self] message in
            if let envelope = self?.open(message) { handle(envelope) }
        }, deadline: deadline)
        return BusInlineSubscription(receiver: receiver, connection: connection)
    }

    /// Answers `request` (a command from `router`) on its reply-to address with its correlation id.
    public func reply(to request: AMQPMessage, from router: String, with message: BusMessage, timeToLive: Duration,
                      deadline: ContinuousClock.Instant) async throws(AMQPError) {
        guard let replyTo = request.replyTo else {
            throw AMQPError(.invalidMessage, "the request names no reply-to address")
        }
        let reply = try amqpMessage(message, for: .one(router), correlationID: request.correlationID ?? request.messageID, timeToLive: timeToLive)
        try await connection.send(reply, to: replyTo, deadline: deadline)
    }
}

/// The checked messages of one subscription: those `BusEndpoint.open` accepts, with what carried them.
public struct BusSubscription: AsyncSequence, Sendable {
    public typealias Element = (BusEnvelope, AMQPMessage)

    let messages: AMQPMessages
    let endpoint: BusEndpoint

    public func makeAsyncIterator() -> Iterator { Iterator(messages: messages.makeAsyncIterator(), endpoint: endpoint) }

    public struct Iterator: AsyncIteratorProtocol {
        var messages: AMQPMessages.Iterator
        let endpoint: BusEndpoint

        /// The next message that passed the checks; nil once the subscription has ended.
        public mutating func next() async -> Element? {
            while let message = await messages.next() {
                if let envelope = endpoint.open(message) { return (envelope, message) }
            }
            return nil
        }
    }
}

/// A subscription whose messages go to a function as they arrive (`BusEndpoint.subscribe(_:settlement:deadline:inline:)`).
public struct BusInlineSubscription: Sendable {
    let receiver: AMQPReceiver
    let connection: AMQPConnection

    /// Returns when the subscription ends (detached, or its connection closed for good) or the task is cancelled.
    public func ended() async {
        for await _ in receiver.messages {}
    }

    /// Ends the subscription: once the connection's thread has taken this, the function is not called again.
    public func detach() {
        connection.detach(receiver)
    }
}
