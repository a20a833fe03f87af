import CProton
import CallbackWaits
import Logging
import ServiceLifecycle
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

/// What cancelling the sending task does to a send.
public enum SendCancellation: Sendable {
    /// Nothing: the send goes on until the broker settles it or the deadline passes (a result
    /// computed must still reach its requester during a graceful shutdown).
    case finish
    /// The sender stops waiting at once; a message the connection has not taken yet is not sent.
    case abandon
}

/// A subscription: the messages arriving on one address, across reconnects.
public final class AMQPReceiver: Sendable {
    /// Who settles a message the broker delivers.
    public enum Settlement: Sendable {
        /// The client accepts each message when it arrives (one disposition frame back per
        /// message): the broker keeps it until then.
        case clientAccepts
        /// The broker sends each message settled and forgets it (at most once): for messages whose
        /// loss the receiver notices and survives, many a second. The bus's addresses are topics
        /// whose queue lives and dies with the subscription, so a message the client has not
        /// accepted is lost with its connection either way.
        case brokerSettles
    }

    /// Who takes the messages.
    public enum Consumer: Sendable {
        /// A task, through `messages`; the link's credit comes back as it takes them.
        case sequence
        /// A function called on the connection's thread with each message as it arrives; the
        /// credit comes back as it returns. No task is woken per message, which is most of what a
        /// small message costs when a thousand come a second (the router's inventory). It must
        /// not wait: the connection's other links wait while it runs. Not called after the
        /// subscription ends; `messages` then yields nothing and ends with the subscription.
        case inline(@Sendable (AMQPMessage) -> Void)
    }

    public let address: String
    /// Every message, in arrival order; accepted by the client when it arrives here (unless the
    /// broker settled it).
    public let messages: AMQPMessages
    private let subscription: Subscription
    var id: UInt64 { subscription.id }

    /// Messages received and not yet consumed: never more than the receiver's capacity.
    public var buffered: Int { messages.buffer.count }

    /// Whether the broker sends the messages settled, as asked with `.brokerSettles`, on the link
    /// attached last.
    public var settledByBroker: Bool { subscription.settledByBroker.load(ordering: .relaxed) }

    init(subscription: Subscription) {
        address = subscription.address
        messages = AMQPMessages(buffer: subscription.buffer)
        self.subscription = subscription
    }
}

/// One AMQP 1.0 connection, kept open while its `run()` runs: reconnected with backoff whenever
/// it drops, to the next node of the cluster, with every subscription attached again. All Proton
/// objects live on one proactor thread, which `run()` starts and outlives; callers hand work over
/// through an outbox and `pn_connection_wake`, and every wait has a deadline (a refused attach,
/// for example, is otherwise never answered). What is sent or subscribed before `run()` waits
/// for the connection, within its deadline.
public final class AMQPConnection: Service, Sendable {
    public let configuration: AMQPConfiguration
    public let events: AsyncStream<AMQPConnectionEvent>
    private let shared: SharedState
    private let engine: Engine
    private let started = Mutex(false)

    /// Checks the configuration; connecting starts with `run()`.
    public init(configuration: AMQPConfiguration, logger: Logger) throws(AMQPError) {
        try configuration.validate()
        self.configuration = configuration
        let (events, sink) = AsyncStream.makeStream(of: AMQPConnectionEvent.self, bufferingPolicy: .bufferingNewest(1024))
        self.events = events
        shared = SharedState()
        engine = Engine(configuration: configuration, shared: shared, events: sink, logger: logger)
    }

    /// Connects and keeps the connection until graceful shutdown or cancellation; then closes it
    /// (cutting it if the broker does not answer within two seconds) and returns once the
    /// proactor thread has ended. Runs once.
    public func run() async throws {
        guard started.withLock({ started in
            defer { started = true }
            return !started
        }) else {
            throw AMQPError(.closed, "the connection has run already")
        }
        engine.start()
        let shared = self.shared, engine = self.engine
        await withTaskCancellationOrGracefulShutdownHandler {
            await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
                engine.whenStopped { ended.resume() }
            }
        } onCancelOrGracefulShutdown: {
            shared.enqueue(.close)
            engine.interrupt()
        }
    }

    /// Runs the connection around `body`, then closes it: for short-lived users (fencectl, tests,
    /// a daemon's start-up, which needs the broker before its service group exists).
    @discardableResult
    public func whileRunning<T: Sendable>(isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self, isolation: isolation) { group in
            group.addTask { try await self.run() }
            defer { group.cancelAll() }
            return try await body()
        }
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

    /// Which opening of the connection is open now (1 for the first); nil while it is not.
    public var generation: UInt64? { shared.generation }

    /// Sends and waits until the broker accepts the message (at least once: the caller retries on
    /// failure). Messages wait for a connection until the deadline.
    public func send(_ message: AMQPMessage, to address: String, deadline: ContinuousClock.Instant,
                     whenCancelled: SendCancellation = .finish) async throws(AMQPError) {
        let bytes = try MessageCodec().encode(message)
        let cancelled: (@Sendable () -> Result<Void, AMQPError>)? = switch whenCancelled {
        case .finish: nil
        case .abandon: { .failure(AMQPError(.cancelled, "\(address): cancelled before the broker accepted the message")) }
        }
        let result: Result<Void, AMQPError> = await CallbackWait.wait(until: deadline, expired: {
            .failure(AMQPError(.timedOut, "\(address): not accepted before the deadline"))
        }, cancelled: cancelled) { once in
            shared.enqueue(.send(Outgoing(address: address, bytes: bytes.map { CChar(bitPattern: $0) }, settled: once)))
        }
        try result.get()
    }

    /// Subscribes to `address` and waits for the broker to confirm the attach. The subscription
    /// is attached again after every reconnect, until `detach`. At most `capacity` messages wait
    /// for the consumer; the broker holds back the rest until it takes some.
    public func receiver(from address: String, capacity: Int = 256, settlement: AMQPReceiver.Settlement = .clientAccepts,
                         consumer: AMQPReceiver.Consumer = .sequence, deadline: ContinuousClock.Instant) async throws(AMQPError) -> AMQPReceiver {
        let id = shared.nextID()
        let shared = self.shared
        let buffer = MessageBuffer(capacity: capacity, consumer: consumer) { grant in shared.enqueue(.grant(id: id, grant)) }
        // Made in the wait's start, which runs before the wait returns.
        let made = Mutex<Subscription?>(nil)
        let result: Result<Void, AMQPError> = await CallbackWait.wait(until: deadline, expired: {
            .failure(AMQPError(.timedOut, "\(address): the attach was not confirmed before the deadline"))
        }) { once in
            let subscription = Subscription(id: id, address: address, settlement: settlement, buffer: buffer, firstAttach: once)
            made.withLock { $0 = subscription }
            shared.enqueue(.attach(subscription))
        }
        do {
            try result.get()
        } catch {
            // Taken at once, connected or not: a refused subscription must not be attached again
            // with the next connection.
            shared.enqueue(.detach(id: id))
            engine.interrupt()
            throw error
        }
        guard let subscription = made.withLock({ $0 }) else { preconditionFailure("CallbackWait.wait ran its start") }
        return AMQPReceiver(subscription: subscription)
    }

    /// Ends a subscription; its message stream finishes, connected or not.
    public func detach(_ receiver: AMQPReceiver) {
        shared.enqueue(.detach(id: receiver.id))
        engine.interrupt()
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

    /// Fails what waits on this operation: the connection is closed for good.
    func refuse() {
        let closed = AMQPError(.closed, "the connection was closed")
        switch self {
        case .send(let outgoing):
            outgoing.settled.resume(.failure(closed))
        case .attach(let subscription):
            subscription.firstAttach.resume(.failure(closed))
            subscription.buffer.finish()
        case .grant, .detach, .close:
            break
        }
    }
}

struct Outgoing: Sendable {
    let address: String
    let bytes: [CChar]
    let settled: ResumeOnce<Result<Void, AMQPError>>
}

final class Subscription: Sendable {
    let id: UInt64
    let address: String
    let settlement: AMQPReceiver.Settlement
    /// For `.brokerSettles`: whether the broker agreed, on the link attached last.
    let settledByBroker = Atomic(false)
    let buffer: MessageBuffer
    let firstAttach: ResumeOnce<Result<Void, AMQPError>>

    init(id: UInt64, address: String, settlement: AMQPReceiver.Settlement, buffer: MessageBuffer,
         firstAttach: ResumeOnce<Result<Void, AMQPError>>) {
        self.id = id
        self.address = address
        self.settlement = settlement
        self.buffer = buffer
        self.firstAttach = firstAttach
    }
}

/// What callers and the proactor thread share, under one lock.
final class SharedState: Sendable {
    private struct State {
        var outbox: [Operation] = []
        /// The proactor thread has ended: new work is refused at once.
        var closed = false
        /// The open connection, for `pn_connection_wake`; cleared before Proton frees it.
        var connection: WakeablePointer?
        var connected: AMQPConfiguration.Broker?
        var generation: UInt64?
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
    /// work waits for the next connection. After the thread has ended, the work is refused.
    func enqueue(_ operation: Operation) {
        let accepted = state.withLock { state in
            guard !state.closed else { return false }
            state.outbox.append(operation)
            if let connection = state.connection { pn_connection_wake(connection.pointer) }
            return true
        }
        if !accepted { operation.refuse() }
    }

    /// The proactor thread ends: what waits is handed back, and nothing more is taken.
    func closeOutbox() -> [Operation] {
        state.withLock { state in
            state.closed = true
            state.connection = nil
            state.connected = nil
            defer { state.outbox = [] }
            return state.outbox
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

    var generation: UInt64? { state.withLock { $0.generation } }

    func connectionOpened(_ connection: OpaquePointer) {
        let wakeable = WakeablePointer(pointer: connection)
        state.withLock { $0.connection = wakeable }
    }

    func setConnected(to broker: AMQPConfiguration.Broker, generation: UInt64) {
        state.withLock { state in
            state.connected = broker
            state.generation = generation
        }
    }

    func connectionClosed() {
        state.withLock { state in
            state.connection = nil
            state.connected = nil
            state.generation = nil
        }
    }
}

/// A `pn_connection_t` shared only so that other threads can call `pn_connection_wake` on it,
/// which Proton declares thread-safe; it is cleared (under the lock) before Proton frees it.
struct WakeablePointer: @unchecked Sendable {
    let pointer: OpaquePointer
}
