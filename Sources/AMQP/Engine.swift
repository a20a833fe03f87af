import CProton
import CallbackWaits
import Logging
import Metrics
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Everything that touches Proton's connection objects. Its methods run on the proactor thread
/// only (Proton serialises a connection's event batches there); other threads reach it through
/// `SharedState` and the thread-safe `pn_proactor_interrupt`.
final class Engine: @unchecked Sendable {
    private let configuration: AMQPConfiguration
    private let shared: SharedState
    private let events: AsyncStream<AMQPConnectionEvent>.Continuation
    private let logger: Logger
    private let proactor: OpaquePointer = pn_proactor()
    private let codec = MessageCodec()

    private var connection: OpaquePointer?
    private var session: OpaquePointer?
    /// Where the connection is in its life, and what to do next: see `ConnectionStateMachine`.
    private var machine: ConnectionStateMachine
    private var tag: UInt64 = 0
    private var linkNames: UInt64 = 0

    /// Wanted subscriptions, by id: attached on every connection.
    private var subscriptions: [UInt64: Subscription] = [:]
    private var receiverLinks: [OpaquePointer: Subscription] = [:]
    private var senders: [String: OpaquePointer] = [:]
    private var unsent: [OpaquePointer: [Outgoing]] = [:]
    private var inFlight: [OpaquePointer: Outgoing] = [:]
    private var partial: [OpaquePointer: [CChar]] = [:]
    private var onStop: [@Sendable () -> Void] = []
    private let stopLock = Mutex(false)

    init(configuration: AMQPConfiguration, shared: SharedState, events: AsyncStream<AMQPConnectionEvent>.Continuation, logger: Logger) {
        self.configuration = configuration
        self.shared = shared
        self.events = events
        self.logger = logger
        machine = ConnectionStateMachine(nodes: configuration.brokers.count, timing: .init(
            backoff: configuration.reconnectBackoff,
            connectTimeout: configuration.connectTimeout,
            reattachDelay: configuration.reconnectBackoff.upperBound,
            closeTimeout: .seconds(2),
            stableAfter: .seconds(10)
        ))
    }

    /// Starts the proactor thread, which keeps the engine alive until it ends.
    func start() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            let engine = Unmanaged<Engine>.fromOpaque(context!).takeRetainedValue()
            engine.run()
            return nil
        }, context)
        precondition(created == 0, "cannot start the AMQP proactor thread")
        pthread_detach(thread)
    }

    deinit {
        // Only now: the thread and the owner both hold the engine, so neither can still use the proactor.
        pn_proactor_free(proactor)
    }

    /// Thread-safe: makes the proactor thread look at the outbox even without a connection.
    func interrupt() { pn_proactor_interrupt(proactor) }

    /// Thread-safe: `callback` is called when the proactor thread has ended (at once if it has).
    func whenStopped(_ callback: @escaping @Sendable () -> Void) {
        let ended = stopLock.withLock { ended in
            if !ended { onStop.append(callback) }
            return ended
        }
        if ended { callback() }
    }

    private func run() {
        var running = perform(machine.start(now: .now))
        while running {
            let batch = pn_proactor_wait(proactor)
            while let event = pn_event_batch_next(batch) {
                if !handle(event) { running = false }
            }
            pn_proactor_done(proactor, batch)
        }
        shutDown()
    }

    // MARK: - Connecting

    /// The node connected to or tried last.
    private var broker: AMQPConfiguration.Broker { configuration.brokers[machine.node ?? 0] }

    /// Does what the state machine decided; false ends the thread.
    private func perform(_ action: ConnectionStateMachine.Action) -> Bool {
        switch action {
        case .connect(let node, let timer):
            connect(to: configuration.brokers[node])
            setTimer(timer)
        case .cutTransport(let timer):
            pn_proactor_disconnect(proactor, nil)
            setTimer(timer)
        case .forgetTransport(let reason):
            logger.warning("the broker connection did not close when cut; leaving it behind", metadata: ["broker": "\(broker)"])
            return transportClosed(reason)
        case .announceConnected(let generation):
            shared.setConnected(to: broker, generation: generation)
            logger.info("connected to the broker", metadata: ["broker": "\(broker)", "generation": "\(generation)"])
            // More than one connection opened means reconnects.
            Counter(label: "fence_bus_connections_total").increment()
            Gauge(label: "fence_bus_connected").record(1)
            events.yield(.connected(generation: generation))
            for subscription in subscriptions.values.sorted(by: { $0.id < $1.id }) { attach(subscription) }
            return drainOutbox()
        case .retry(_, let delay), .wait(let delay):
            setTimer(delay)
        case .reattach:
            let attached = Set(receiverLinks.values.map(\.id))
            for subscription in subscriptions.values.sorted(by: { $0.id < $1.id }) where !attached.contains(subscription.id) {
                logger.info("attaching again a subscription the broker closed", metadata: ["address": "\(subscription.address)"])
                attach(subscription)
            }
        case .closeConnection(let timer):
            if let connection { pn_connection_close(connection) }
            setTimer(timer)
        case .stop:
            return false
        case .none:
            break
        }
        return true
    }

    private func setTimer(_ delay: Duration) {
        let (seconds, attoseconds) = max(delay, .zero).components
        pn_proactor_set_timeout(proactor, pn_millis_t(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000))
    }

    private func connect(to broker: AMQPConfiguration.Broker) {
        let transport = pn_transport()!
        if let tls = configuration.tls {
            let domain = pn_ssl_domain(PN_SSL_MODE_CLIENT)!
            defer { pn_ssl_domain_free(domain) }
            var failed = pn_ssl_domain_set_trusted_ca_db(domain, tls.caFile) != 0
            if let certificate = tls.certificateFile, let key = tls.keyFile {
                failed = failed || pn_ssl_domain_set_credentials(domain, certificate, key, nil) != 0
            }
            let verification = tls.verifyHostname ? PN_SSL_VERIFY_PEER_NAME : PN_SSL_VERIFY_PEER
            failed = failed || pn_ssl_domain_set_peer_authentication(domain, verification, tls.caFile) != 0
            let ssl = pn_ssl(transport)
            failed = failed || pn_ssl_init(ssl, domain, nil) != 0
            _ = pn_ssl_set_peer_hostname(ssl, broker.host)
            if failed { logger.error("the TLS settings were refused by Proton; the connection will fail") }
        }
        let sasl = pn_sasl(transport)
        pn_sasl_allowed_mechs(sasl, configuration.mechanisms.map(\.rawValue).joined(separator: " "))
        if configuration.tls == nil && (broker.isLoopback || configuration.allowInsecurePlain) {
            pn_sasl_set_allow_insecure_mechs(sasl, true)
        }
        let (seconds, attoseconds) = configuration.idleTimeout.components
        pn_transport_set_idle_timeout(transport, pn_millis_t(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000))

        let connection = pn_connection()!
        pn_connection_set_container(connection, configuration.containerID)
        if let user = configuration.user { pn_connection_set_user(connection, user) }
        if let password = configuration.password { pn_connection_set_password(connection, password) }
        var address = [CChar](repeating: 0, count: 512)
        _ = pn_proactor_addr(&address, address.count, broker.host, String(broker.port))
        pn_proactor_connect2(proactor, connection, transport, address)
    }

    // MARK: - Events

    /// Handles one event; false ends the thread.
    private func handle(_ event: OpaquePointer) -> Bool {
        let type = pn_event_type(event)
        // A connection left behind (cut, and its close never reported in time) counts no more:
        // its late events must not pass for the current connection's.
        if type != PN_CONNECTION_INIT, let owner = pn_event_connection(event), owner != connection {
            logger.debug("an event of a connection left behind", metadata: ["event": "\(String(cString: pn_event_type_name(type)))"])
            return true
        }
        switch type {
        case PN_CONNECTION_INIT:
            let connection = pn_event_connection(event)!
            self.connection = connection
            shared.connectionOpened(connection)
            pn_connection_open(connection)
            session = pn_session(connection)
            pn_session_open(session)

        case PN_CONNECTION_REMOTE_OPEN:
            return perform(machine.opened(now: .now))

        case PN_CONNECTION_WAKE:
            return drainOutbox()

        case PN_LINK_REMOTE_OPEN:
            let link = pn_event_link(event)!
            if let subscription = receiverLinks[link] {
                if pn_terminus_get_address(pn_link_remote_source(link)) != nil {
                    noteSettlement(of: subscription, on: link)
                    subscription.firstAttach.resume(.success(()))
                }
            }

        case PN_LINK_FLOW:
            let link = pn_event_link(event)!
            if pn_link_is_sender(link) { flush(link) }

        case PN_DELIVERY:
            let delivery = pn_event_delivery(event)!
            let link = pn_delivery_link(delivery)!
            if pn_link_is_sender(link) { settled(delivery) } else { received(delivery, on: link) }

        case PN_LINK_REMOTE_CLOSE, PN_LINK_REMOTE_DETACH:
            return linkClosed(pn_event_link(event)!)

        case PN_SESSION_REMOTE_CLOSE, PN_CONNECTION_REMOTE_CLOSE:
            if let connection = pn_event_connection(event) {
                if let condition = describe(pn_connection_remote_condition(connection)) {
                    logger.warning("the broker closed the connection", metadata: ["broker": "\(broker)", "condition": "\(condition)"])
                }
                pn_connection_close(connection)
            }

        case PN_TRANSPORT_CLOSED:
            return transportClosed(describe(pn_transport_condition(pn_event_transport(event))) ?? "connection closed")

        case PN_PROACTOR_TIMEOUT:
            return perform(machine.timerFired(now: .now))

        case PN_PROACTOR_INTERRUPT:
            return drainOutbox()

        default:
            break
        }
        return true
    }

    /// Takes the callers' work; false when it closed the connection for good.
    private func drainOutbox() -> Bool {
        var running = true
        var waiting: [Operation] = []
        for operation in shared.takeOutbox() {
            switch operation {
            case .send(let outgoing):
                guard !outgoing.settled.isDone else { continue }
                guard let session, machine.isOpen else {
                    waiting.append(operation)
                    continue
                }
                let link = senders[outgoing.address] ?? openSender(outgoing.address, session: session)
                unsent[link, default: []].append(outgoing)
                flush(link)
            case .attach(let subscription):
                subscriptions[subscription.id] = subscription
                if machine.isOpen { attach(subscription) }
            case .grant(let id, let grant):
                for (link, subscription) in receiverLinks where subscription.id == id && subscription.buffer.isCurrent(grant.epoch) {
                    pn_link_flow(link, Int32(clamping: grant.credit))
                }
            case .detach(let id):
                guard let subscription = subscriptions.removeValue(forKey: id) else { continue }
                for (link, attached) in receiverLinks where attached === subscription {
                    receiverLinks[link] = nil
                    release(link)
                }
                subscription.buffer.finish()
            case .close:
                running = perform(machine.close(now: .now)) && running
            }
        }
        if !waiting.isEmpty { shared.putBack(waiting) }
        return running
    }

    private func openSender(_ address: String, session: OpaquePointer) -> OpaquePointer {
        linkNames += 1
        let link = pn_sender(session, "\(configuration.containerID)-s\(linkNames)")!
        pn_terminus_set_address(pn_link_target(link), address)
        pn_link_open(link)
        senders[address] = link
        return link
    }

    private func attach(_ subscription: Subscription) {
        guard let session else { return }
        linkNames += 1
        let link = pn_receiver(session, "\(configuration.containerID)-r\(linkNames)")!
        pn_terminus_set_address(pn_link_source(link), subscription.address)
        pn_link_set_max_message_size(link, UInt64(configuration.maximumMessageSize))
        if subscription.settlement == .brokerSettles { pn_link_set_snd_settle_mode(link, PN_SND_SETTLED) }
        pn_link_open(link)
        pn_link_flow(link, Int32(clamping: subscription.buffer.creditForNewLink().credit))
        receiverLinks[link] = subscription
    }

    /// Sends what the sender has credit for.
    private func flush(_ link: OpaquePointer) {
        while pn_link_credit(link) > 0, var queue = unsent[link], !queue.isEmpty {
            let outgoing = queue.removeFirst()
            unsent[link] = queue
            guard !outgoing.settled.isDone else { continue }
            tag += 1
            var tagValue = tag
            let delivery = withUnsafeBytes(of: &tagValue) { pn_delivery(link, pn_dtag($0.baseAddress!.assumingMemoryBound(to: CChar.self), 8)) }!
            _ = outgoing.bytes.withUnsafeBufferPointer { pn_link_send(link, $0.baseAddress, $0.count) }
            _ = pn_link_advance(link)
            inFlight[delivery] = outgoing
        }
    }

    private func settled(_ delivery: OpaquePointer) {
        let state = pn_delivery_remote_state(delivery)
        guard state != 0 || pn_delivery_settled(delivery) else { return }
        if let outgoing = inFlight.removeValue(forKey: delivery) {
            if state == UInt64(PN_ACCEPTED) {
                outgoing.settled.resume(.success(()))
            } else {
                outgoing.settled.resume(.failure(AMQPError(.notAccepted, "\(outgoing.address): the broker answered \(Self.stateName(state))")))
            }
        }
        pn_delivery_settle(delivery)
    }

    private func received(_ delivery: OpaquePointer, on link: OpaquePointer) {
        guard pn_delivery_readable(delivery) else { return }
        var bytes = partial.removeValue(forKey: delivery) ?? []
        let pending = pn_delivery_pending(delivery)
        if bytes.count + pending > configuration.maximumMessageSize {
            // Refused before it is buffered whole: what a flood of huge messages costs is bounded.
            let address = receiverLinks[link]?.address ?? "?"
            Counter(label: "fence_bus_oversized_messages_total").increment()
            logger.warning("refused a message larger than the limit", metadata: [
                "address": "\(address)", "limit": "\(configuration.maximumMessageSize)", "size-so-far": "\(bytes.count + pending)",
            ])
            finish(delivery, UInt64(PN_REJECTED))
            pn_link_flow(link, 1)
            return
        }
        if pending > 0 {
            let start = bytes.count
            bytes += [CChar](repeating: 0, count: pending)
            let count = bytes.withUnsafeMutableBufferPointer { pn_link_recv(link, $0.baseAddress! + start, pending) }
            if count < 0 && count != PN_EOS {
                bytes.removeLast(pending)
            } else if count >= 0 {
                bytes.removeLast(pending - count)
            }
        }
        if pn_delivery_partial(delivery) {
            partial[delivery] = bytes
            return
        }
        guard let subscription = receiverLinks[link] else {
            pn_delivery_settle(delivery)
            return
        }
        do {
            subscription.buffer.deliver(try codec.decode(bytes))
            finish(delivery, UInt64(PN_ACCEPTED))
        } catch {
            logger.warning("dropped an undecodable message", metadata: ["address": "\(subscription.address)", "error": "\(error)"])
            finish(delivery, UInt64(PN_REJECTED))
            // Nobody will consume it: its credit comes back at once.
            pn_link_flow(link, 1)
        }
    }

    /// Whether the broker agreed to send a subscription's messages settled; said when it did not
    /// (each message is then accepted, as the link's default).
    private func noteSettlement(of subscription: Subscription, on link: OpaquePointer) {
        guard subscription.settlement == .brokerSettles else { return }
        let agreed = pn_link_remote_snd_settle_mode(link) == PN_SND_SETTLED
        if subscription.settledByBroker.exchange(agreed, ordering: .relaxed) != agreed || !agreed {
            logger.log(level: agreed ? .debug : .notice, agreed ? "the broker sends this subscription's messages settled"
                : "the broker does not send this subscription's messages settled; each is accepted", metadata: ["address": "\(subscription.address)"])
        }
    }

    /// Settles a received message with `outcome`, told to the broker unless it settled the
    /// message itself (`AMQPReceiver.Settlement.brokerSettles`: no frame goes back).
    private func finish(_ delivery: OpaquePointer, _ outcome: UInt64) {
        if !pn_delivery_settled(delivery) { pn_delivery_update(delivery, outcome) }
        pn_delivery_settle(delivery)
    }

    /// The broker closed a link; false when that ended the thread.
    private func linkClosed(_ link: OpaquePointer) -> Bool {
        let condition = describe(pn_link_remote_condition(link)) ?? "closed by the broker"
        if let subscription = receiverLinks.removeValue(forKey: link) {
            release(link)
            let refusal = AMQPError(.attachRefused, "\(subscription.address): \(condition)")
            if !subscription.firstAttach.resume(.failure(refusal)) && subscriptions[subscription.id] != nil {
                logger.error("the broker closed a subscription; it is attached again shortly", metadata: [
                    "address": "\(subscription.address)", "condition": "\(condition)",
                ])
                return perform(machine.subscriptionClosed(now: .now))
            }
        } else if let (address, _) = senders.first(where: { $0.value == link }) {
            senders[address] = nil
            let failure = AMQPError(.notAccepted, "\(address): the broker closed the link: \(condition)")
            for outgoing in unsent.removeValue(forKey: link) ?? [] { outgoing.settled.resume(.failure(failure)) }
            for (delivery, outgoing) in inFlight where pn_delivery_link(delivery) == link {
                inFlight[delivery] = nil
                outgoing.settled.resume(.failure(failure))
            }
            release(link)
        }
        return true
    }

    /// Closes a link of ours and lets Proton free it once both ends are closed, with whatever
    /// was half received on it: a link re-attached every few seconds must not pile up.
    private func release(_ link: OpaquePointer) {
        partial = partial.filter { pn_delivery_link($0.key) != link }
        pn_link_close(link)
        pn_link_free(link)
    }

    /// The transport closed: everything tied to it goes; false when that ended the thread.
    private func transportClosed(_ reason: String) -> Bool {
        let node = broker
        connection = nil
        session = nil
        shared.connectionClosed()
        // What was handed to the broker may or may not have arrived: its sender learns it failed.
        let lost = AMQPError(.disconnected, "the connection dropped before the broker settled the message: \(reason)")
        for outgoing in inFlight.values { outgoing.settled.resume(.failure(lost)) }
        inFlight = [:]
        // What was never sent goes out on the next connection, if its deadline allows.
        shared.putBack(unsent.values.flatMap { $0 }.map { .send($0) })
        unsent = [:]
        senders = [:]
        receiverLinks = [:]
        partial = [:]
        // Jittered (between half and all of the backoff step) so that the agents of many hosts
        // do not come back to a restarted broker in one wave.
        let action = machine.transportClosed(reason: reason, now: .now, jitter: Double.random(in: 0.5...1))
        if case .retry(let report, _) = action {
            switch report {
            case .disconnected(let reason):
                logger.warning("disconnected from the broker", metadata: ["broker": "\(node)", "reason": "\(reason)"])
                Gauge(label: "fence_bus_connected").record(0)
                events.yield(.disconnected(reason: reason))
            case .cannotConnect(let reason, let again):
                logger.log(level: again ? .debug : .warning, "cannot connect to the broker", metadata: ["broker": "\(node)", "reason": "\(reason)"])
            }
        }
        return perform(action)
    }

    private func shutDown() {
        // From now on the outbox refuses work: nothing waits for a thread that is gone.
        for operation in shared.closeOutbox() { operation.refuse() }
        for subscription in subscriptions.values { Operation.attach(subscription).refuse() }
        subscriptions = [:]
        events.finish()
        let waiters = stopLock.withLock { ended in
            ended = true
            defer { onStop = [] }
            return onStop
        }
        for waiter in waiters { waiter() }
    }

    // MARK: - Helpers

    private func describe(_ condition: OpaquePointer?) -> String? {
        guard let condition, pn_condition_is_set(condition) else { return nil }
        let name = pn_condition_get_name(condition).map { String(cString: $0) } ?? "error"
        let description = pn_condition_get_description(condition).map { String(cString: $0) } ?? ""
        return description.isEmpty ? name : "\(name): \(description)"
    }

    private static func stateName(_ state: UInt64) -> String {
        switch state {
        case UInt64(PN_REJECTED): "rejected"
        case UInt64(PN_RELEASED): "released"
        case UInt64(PN_MODIFIED): "modified"
        default: "state \(state)"
        }
    }
}
