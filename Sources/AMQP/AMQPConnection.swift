import CProton
import CallbackWaits
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What happened to the connection, in order.
public enum AMQPConnectionEvent: Hashable, Sendable {
    /// Opened (again): everything that was attached is attached again.
    case connected(generation: UInt64)
    case disconnected(reason: String)
}

/// A subscription: the messages arriving on one address, across reconnects.
public final class AMQPReceiver: Sendable {
    public let address: String
    /// Every message, in arrival order; accepted by the client when it arrives here.
    public let messages: AMQPMessages
    let id: UInt64

    /// Messages received and not yet consumed: never more than the receiver's capacity.
    public var buffered: Int { messages.buffer.count }

    init(address: String, messages: AMQPMessages, id: UInt64) {
        self.address = address
        self.messages = messages
        self.id = id
    }
}

/// One AMQP 1.0 connection, kept open: reconnected with exponential backoff whenever it drops,
/// with every subscription attached again. All Proton objects live on one proactor thread;
/// callers hand work over through an outbox and `pn_connection_wake`, and every wait has a
/// deadline (a refused attach, for example, is otherwise never answered).
public final class AMQPConnection: Sendable {
    public let configuration: AMQPConfiguration
    public let events: AsyncStream<AMQPConnectionEvent>
    private let shared: SharedState
    private let engine: Engine
    private let stopped: Mutex<ResumeOnce<Void>?> = Mutex(nil)

    /// Starts connecting at once; check readiness with `waitUntilConnected`.
    public init(configuration: AMQPConfiguration, logger: Logger) throws(AMQPError) {
        try configuration.validate()
        self.configuration = configuration
        let (events, sink) = AsyncStream.makeStream(of: AMQPConnectionEvent.self, bufferingPolicy: .bufferingNewest(1024))
        self.events = events
        shared = SharedState()
        engine = Engine(configuration: configuration, shared: shared, events: sink, logger: logger)
        engine.start()
    }

    deinit {
        shared.enqueue(.close)
        engine.interrupt()
    }

    /// Waits until the connection is open.
    public func waitUntilConnected(deadline: ContinuousClock.Instant) async throws(AMQPError) {
        while !shared.isConnected {
            guard ContinuousClock.now < deadline else {
                throw AMQPError(.timedOut, "not connected to \(configuration.brokerList) before the deadline")
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    public var isConnected: Bool { shared.isConnected }

    /// The node the connection is open to; nil while it is not.
    public var connectedBroker: AMQPConfiguration.Broker? { shared.connectedBroker }

    /// Sends and waits until the broker accepts the message (at least once: the caller retries on
    /// failure). Messages wait for a connection until the deadline.
    public func send(_ message: AMQPMessage, to address: String, deadline: ContinuousClock.Instant) async throws(AMQPError) {
        let bytes = try MessageCodec().encode(message)
        let result: Result<Void, AMQPError> = await CallbackWait.wait(until: deadline, expired: {
            .failure(AMQPError(.timedOut, "\(address): not accepted before the deadline"))
        }) { once in
            shared.enqueue(.send(Outgoing(address: address, bytes: bytes.map { CChar(bitPattern: $0) }, settled: once)))
        }
        try result.get()
    }

    /// Subscribes to `address` and waits for the broker to confirm the attach. The subscription
    /// is attached again after every reconnect, until `detach`. At most `capacity` messages wait
    /// for the consumer; the broker holds back the rest until it takes some.
    public func receiver(from address: String, capacity: Int = 256, deadline: ContinuousClock.Instant) async throws(AMQPError) -> AMQPReceiver {
        let id = shared.nextID()
        let shared = self.shared
        let buffer = MessageBuffer(capacity: capacity) { grant in shared.enqueue(.grant(id: id, grant)) }
        let result: Result<Void, AMQPError> = await CallbackWait.wait(until: deadline, expired: {
            .failure(AMQPError(.timedOut, "\(address): the attach was not confirmed before the deadline"))
        }) { once in
            shared.enqueue(.attach(Subscription(id: id, address: address, buffer: buffer, firstAttach: once)))
        }
        do {
            try result.get()
        } catch {
            shared.enqueue(.detach(id: id))
            throw error
        }
        return AMQPReceiver(address: address, messages: AMQPMessages(buffer: buffer), id: id)
    }

    /// Ends a subscription; its message stream finishes.
    public func detach(_ receiver: AMQPReceiver) {
        shared.enqueue(.detach(id: receiver.id))
    }

    /// Closes the connection for good and waits (up to five seconds) for the proactor thread to end.
    public func close() async {
        _ = await CallbackWait.wait(until: .now + .seconds(5), expired: {}) { once in
            engine.whenStopped(once)
            shared.enqueue(.close)
            engine.interrupt()
        }
    }
}

/// Work for the proactor thread.
enum Operation: Sendable {
    case send(Outgoing)
    case attach(Subscription)
    /// The consumer took messages: grant their credit again (on the link it was counted for).
    case grant(id: UInt64, MessageBuffer.Grant)
    case detach(id: UInt64)
    case close
}

struct Outgoing: Sendable {
    let address: String
    let bytes: [CChar]
    let settled: ResumeOnce<Result<Void, AMQPError>>
}

final class Subscription: Sendable {
    let id: UInt64
    let address: String
    let buffer: MessageBuffer
    let firstAttach: ResumeOnce<Result<Void, AMQPError>>

    init(id: UInt64, address: String, buffer: MessageBuffer, firstAttach: ResumeOnce<Result<Void, AMQPError>>) {
        self.id = id
        self.address = address
        self.buffer = buffer
        self.firstAttach = firstAttach
    }
}

/// What callers and the proactor thread share, under one lock.
final class SharedState: Sendable {
    private struct State {
        var outbox: [Operation] = []
        /// The open connection, for `pn_connection_wake`; cleared before Proton frees it.
        var connection: WakeablePointer?
        var connected: AMQPConfiguration.Broker?
        var counter: UInt64 = 0
    }

    private let state = Mutex(State())

    func nextID() -> UInt64 {
        state.withLock { state in
            state.counter += 1
            return state.counter
        }
    }

    /// Queues work and wakes the proactor thread if a connection is there to wake; otherwise the
    /// work waits for the next connection.
    func enqueue(_ operation: Operation) {
        state.withLock { state in
            state.outbox.append(operation)
            if let connection = state.connection { pn_connection_wake(connection.pointer) }
        }
    }

    func takeOutbox() -> [Operation] {
        state.withLock { state in
            defer { state.outbox = [] }
            return state.outbox
        }
    }

    func putBack(_ operations: [Operation]) {
        state.withLock { $0.outbox.insert(contentsOf: operations, at: 0) }
    }

    var isConnected: Bool { state.withLock { $0.connected != nil } }

    var connectedBroker: AMQPConfiguration.Broker? { state.withLock { $0.connected } }

    func connectionOpened(_ connection: OpaquePointer) {
        let wakeable = WakeablePointer(pointer: connection)
        state.withLock { $0.connection = wakeable }
    }

    func setConnected(to broker: AMQPConfiguration.Broker) {
        state.withLock { $0.connected = broker }
    }

    func connectionClosed() {
        state.withLock { state in
            state.connection = nil
            state.connected = nil
        }
    }

    var hasWork: Bool { state.withLock { !$0.outbox.isEmpty } }
}

/// A `pn_connection_t` shared only so that other threads can call `pn_connection_wake` on it,
/// which Proton declares thread-safe; it is cleared (under the lock) before Proton frees it.
struct WakeablePointer: @unchecked Sendable {
    let pointer: OpaquePointer
}
