import AMQP
import BusClient
import DropReporting
import FenceBus
import FenceCore
import Logging
import Metrics
import Routing
import ServiceLifecycle
import Synchronization

/// fence-routerd's amqp backend: finds which live host runs the target domain from the inventory
/// the agents publish, sends the action there, and answers only with what the agents confirmed
/// after acting. Doubt — a silent host, a lost broker, a timeout, an inventory that changed under
/// the request — is a failure, never "off" and never "done".
public final class RoutedBackend: FenceBackend, Service {
    public struct Settings: Sendable {
        public var routerID: String
        public var configuredHosts: [String]
        public var freshness: Duration
        public var warmUp: Duration
        public var stateDirectory: String?

        public init(routerID: String, configuredHosts: [String], freshness: Duration, warmUp: Duration, stateDirectory: String?) {
            self.routerID = routerID
            self.configuredHosts = configuredHosts
            self.freshness = freshness
            self.warmUp = warmUp
            self.stateDirectory = stateDirectory
        }
    }

    public let settings: Settings
    private let bus: BusEndpoint
    private let inventory: Mutex<Inventory>
    private let started = ContinuousClock.now
    private let completeAnnouncement = Mutex<(announced: Bool, lastLook: ContinuousClock.Instant?)>((false, nil))
    /// Each host's message-age gauge, made once (a host sends a message a second or more), and
    /// whether its messages arrive beyond the freshness window.
    private let hostClocks = Mutex<[String: (age: Gauge, skewed: Bool)]>([:])
    private let store: HostStateStore?
    /// Whether the host list changed since it was last written. Written by `keepHostList` off the
    /// connection's thread (which applies the inventory), a burst of learned hosts at once.
    private let hostListChanged = Atomic(false)
    private let hostListWrites = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let serializer = KeyedSerializer<String>()
    /// When this router last finished an off, on or reboot, by domain (UUID, or the name it was
    /// asked by): status then asks the agents until the inventory shows the domain running again.
    private let actedOn = Mutex<[String: ContinuousClock.Instant]>([:])
    private let subscription: Mutex<(BusInlineSubscription, AMQPRequester)?> = Mutex(nil)
    private let inFlight = CommandsInFlight()
    private let logger: Logger
    /// For what runs on the bus connection's thread (applying the inventory): its lines are
    /// written by `relay`'s task.
    private let relayedLogger: Logger
    private let relay: LogRelay
    /// Checked messages set aside (on the connection's thread): a line per reason and interval.
    private let setAside: DropLog<SetAside>
    /// Whether inventory messages are still applied: not after `run` wrote the host list last.
    private let applying = Mutex(true)

    /// Throws when the saved host state exists but cannot be read.
    public init(settings: Settings, bus: BusEndpoint, logger: Logger) throws {
        self.settings = settings
        self.bus = bus
        var logger = logger
        logger[metadataKey: "router"] = "\(settings.routerID)"
        self.logger = logger
        relay = LogRelay(logger: logger)
        relayedLogger = relay.relaying(logger)
        setAside = DropLog(event: "bus message set aside", summary: "bus messages set aside in the last interval", logger: relayedLogger)
        var inventory = Inventory(freshness: settings.freshness, configuredHosts: settings.configuredHosts)
        store = settings.stateDirectory.map(HostStateStore.init(directory:))
        if let saved = try store?.load() {
            // Learned hosts stay expected across a restart: until they speak, their domains are unknown.
            for host in saved.learned where inventory.hosts[host] == nil { inventory.expect(host) }
            for host in saved.confirmedDown { inventory.confirmDown(host) }
        }
        self.inventory = Mutex(inventory)
    }

    /// Subscribes to the inventory and attaches this router's reply address; ready once it returns.
    public func prepare(deadline: ContinuousClock.Instant) async throws(AMQPError) {
        // Settled by the broker: a thousand hosts' heartbeats a second without a frame back for
        // each. A lost message costs only certainty, never a wrong answer: a host's lost delta or
        // heartbeat shows in its sequence numbers (or its silence) and makes it stale until its
        // next snapshot; a lost operator statement leaves the host as it was (stale, or expected).
        // The queue behind a topic subscription dies with the connection either way.
        // Applied on the connection's thread as each arrives: waking a task for each cost more
        // than applying it (Docs/benchmarks.md, heartbeats). Its log lines and the host list's
        // writes go to tasks, so that a slow journal or disk does not hold the connection.
        let stream = try await bus.subscribe(bus.addresses.inventory, settlement: .brokerSettles, deadline: deadline) { [weak self] envelope in
            self?.receiveWhileApplying(envelope)
        }
        let requester = try await AMQPRequester(connection: bus.connection, replyAddress: bus.addresses.replies(for: settings.routerID), deadline: deadline)
        subscription.withLock { $0 = (stream, requester) }
    }

    /// Keeps the inventory from the bus until shutdown, then writes the host list's last change.
    public func run() async throws {
        guard let (stream, _) = subscription.withLock({ $0 }) else {
            throw AMQPError(.invalidConfiguration, "RoutedBackend.prepare must succeed before run")
        }
        await withDiscardingTaskGroup { whole in
            whole.addTask { await self.relay.run() }
            await serve(stream)
            // Nothing changes the inventory after this: the host list's last change is written.
            applying.withLock { $0 = false }
            stream.detach()
            writeHostListIfChanged()
            relay.finish()
        }
    }

    /// Keeps the inventory from the bus until shutdown.
    private func serve(_ stream: BusInlineSubscription) async {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.announceWarmUp() }
                group.addTask { await self.askForSnapshots() }
                group.addTask { await self.followConnection() }
                group.addTask { await self.sampleInventory() }
                group.addTask { try? await self.bus.drops.run() }
                group.addTask { try? await self.setAside.run() }
                group.addTask { await self.keepHostList() }
                await stream.ended()
                group.cancelAll()
            }
        }
    }

    /// Asks every expected host for a snapshot at once: otherwise a restarted router waits a
    /// snapshot interval before it can vouch for anything.
    private func askForSnapshots() async {
        await withDiscardingTaskGroup { group in
            for host in currentInventory.expectedHosts {
                group.addTask {
                    do {
                        try await self.bus.publish(.snapshotRequest(SnapshotRequest(router: self.settings.routerID)), to: self.bus.addresses.commands(for: host),
                                                   for: .one(host), timeToLive: .seconds(5), deadline: .now + .seconds(5))
                    } catch {
                        self.logger.warning("cannot ask a host for a snapshot", metadata: ["host": "\(host)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    /// After a reconnect: commands in flight go again (their answers may have gone with the node),
    /// and every host is asked for a snapshot (this router missed what they published meanwhile).
    private func followConnection() async {
        for await event in bus.connection.events {
            guard case .connected(let generation) = event, generation > 1 else { continue }
            let resent = inFlight.signal(.routerReconnected)
            logger.notice("back on the bus: commands in flight go again, every host is asked for its inventory", metadata: [
                "generation": "\(generation)", "commands-resent": "\(resent)",
            ])
            await askForSnapshots()
        }
    }

    /// Gauges of the inventory, every second: hosts by liveness, and the domains of live hosts.
    private func sampleInventory() async {
        while (try? await Task.sleep(for: .seconds(1))) != nil {
            let census = census()
            for (state, count) in [("live", census.live), ("stale", census.stale), ("confirmed-down", census.confirmedDown)] {
                Gauge(label: "fence_hosts", dimensions: [("state", state)]).record(count)
            }
            Gauge(label: "fence_inventory_domains").record(census.domains)
            announceCompleteOnce(census)
        }
    }

    /// Says when one warm-up has passed: from then on a domain no live host lists counts as absent.
    private func announceWarmUp() async {
        guard (try? await Task.sleep(until: started + settings.warmUp)) != nil else { return }
        let census = census()
        logger.notice("inventory trusted", metadata: ["hosts-live": "\(census.live)", "hosts-expected": "\(census.expected)", "domains": "\(census.domains)"])
        announceCompleteOnce(census)
    }

    /// Says, once, when the router first has every expected host live after its warm-up: from then
    /// on it answers for every domain (operators and the lab wait for this line). `known`: a census
    /// just taken, if the caller has one.
    ///
    /// Looked at no more than ten times a second: while an expected host stays silent, a look at
    /// every message would go through every host's view for each of the heartbeats that come in.
    private func announceCompleteOnce(_ known: Census? = nil) {
        let now = ContinuousClock.now
        let due = completeAnnouncement.withLock { state -> Bool in
            guard !state.announced, now - started >= settings.warmUp, state.lastLook.map({ now - $0 >= .milliseconds(100) }) ?? true else { return false }
            state.lastLook = now
            return true
        }
        guard due else { return }
        let census = known ?? census()
        guard census.live == census.expected, census.expected > 0,
              completeAnnouncement.withLock({ state in defer { state.announced = true }; return !state.announced }) else { return }
        relayedLogger.notice("inventory complete", metadata: [
            "hosts-live": "\(census.live)", "domains": "\(census.domains)", "after-ms": "\((ContinuousClock.now - started).millisecondsText)",
        ])
    }

    /// The inventory's hosts by liveness, and the domains of the live ones.
    private struct Census {
        var live = 0, stale = 0, confirmedDown = 0, domains = 0
        /// Every host the inventory holds: configured or learned, and not forgotten.
        var expected: Int { live + stale + confirmedDown }
    }

    private func census() -> Census {
        let now = ContinuousClock.now
        let inventory = currentInventory
        var census = Census()
        for host in inventory.hosts.values {
            switch host.liveness(now: now, freshness: inventory.freshness) {
            case .live:
                census.live += 1
                census.domains += host.domains.count
            case .stale: census.stale += 1
            case .confirmedDown: census.confirmedDown += 1
            }
        }
        return census
    }

    private func receiveWhileApplying(_ envelope: BusEnvelope) {
        applying.withLock { applying in
            if applying { receive(envelope) }
        }
    }

    private func receive(_ envelope: BusEnvelope) {
        let about: String
        switch envelope.message {
        case .hostState(let change):
            apply(change, from: envelope.sender)
            return
        case .command, .result, .snapshotRequest:
            return
        case .snapshot(let snapshot): about = snapshot.host
        case .delta(let delta): about = delta.host
        case .heartbeat(let heartbeat): about = heartbeat.host
        }
        let receivedAt = WallClock.now()
        let applied = inventory.withLock { $0.apply(envelope.message, sentAt: envelope.sentAt, receivedAt: receivedAt, now: .now) }
        let ignored = applied.ignored
        noteClock(of: envelope, receivedAt: receivedAt)
        if case .snapshot = envelope.message, ignored == nil {
            let resent = inFlight.signal(.hostSnapshot, host: about)
            if resent > 0 { relayedLogger.info("a host published its inventory: commands in flight to it go again", metadata: ["host": "\(about)", "commands-resent": "\(resent)"]) }
        }
        if case .delta(let delta) = envelope.message {
            logDelta(delta, ignored: ignored)
        } else if let ignored, ignored != .outOfOrder {
            setAside.note(.inventory(ignored), source: about, metadata: ["host": "\(about)", "kind": "\(envelope.message.kind)"])
        }
        if applied.learned {
            relayedLogger.notice("learned a host", metadata: ["host": "\(about)"])
        }
        if applied.endedConfirmation {
            relayedLogger.notice("a host confirmed down spoke again: the confirmation no longer holds", metadata: ["audit": "true", "host": "\(about)"])
        }
        if applied.learned || applied.endedConfirmation { hostListDidChange() }
        announceCompleteOnce()
    }

    /// How far a host's clock and the bus's delay put its messages from ours: a message counts
    /// as heard when it was sent, so an offset beyond the freshness window makes the host stale.
    /// Logged when a host crosses that bound, either way, and gauged per host.
    private func noteClock(of envelope: BusEnvelope, receivedAt: UInt64) {
        let offset = WallClock.difference(from: envelope.sentAt, to: receivedAt)
        let (bound, _) = settings.freshness.components
        let beyond = offset > bound * 1000 || offset < -bound * 1000
        let (age, changed) = hostClocks.withLock { clocks in
            let known = clocks[envelope.sender]
            let age = known?.age ?? Gauge(label: "fence_host_message_age_milliseconds", dimensions: [("host", envelope.sender)])
            let changed = beyond != (known?.skewed ?? false)
            if known == nil || changed { clocks[envelope.sender] = (age, beyond) }
            return (age, changed)
        }
        age.record(offset)
        guard changed else { return }
        if beyond {
            Counter(label: "fence_host_clock_skew_total", dimensions: [("host", envelope.sender)]).increment()
            relayedLogger.warning("a host's messages are further from this clock than the freshness window (its clock is off, or the bus delays them); while they arrive older, it counts as stale", metadata: [
                "host": "\(envelope.sender)", "offset-ms": "\(offset)", "freshness-ms": "\(settings.freshness.millisecondsText)",
            ])
        } else {
            relayedLogger.notice("a host's clock and delay are within the freshness window again", metadata: ["host": "\(envelope.sender)", "offset-ms": "\(offset)"])
        }
    }

    /// What each libvirt event changed in the inventory, and how long after the event.
    private func logDelta(_ delta: InventoryDelta, ignored: Inventory.Ignored?) {
        guard relayedLogger.logLevel <= .info else { return }
        let domain: String
        let state: String
        switch delta.change {
        case .updated(let info): (domain, state) = (info.name, "\(info.state)")
        case .removed(_, let name): (domain, state) = (name, "removed")
        case .unreadable(_, let name): (domain, state) = (name, "unreadable")
        }
        relayedLogger.info("inventory change", metadata: [
            "host": "\(delta.host)", "domain": "\(domain)", "state": "\(state)", "event": "\(delta.event)", "seqno": "\(delta.sequence)",
            "since-event-ms": "\(WallClock.difference(from: delta.eventTime, to: WallClock.now()))",
            "outcome": "\(ignored.map { "ignored-\($0)" } ?? "applied")",
        ])
    }

    /// An operator's statement: applied, kept, and logged for audit.
    private func apply(_ change: HostStateChange, from sender: String) {
        let applied = inventory.withLock { inventory -> Bool in
            switch change.change {
            case .confirmDown:
                inventory.confirmDown(change.host)
                return true
            case .forget:
                return inventory.forget(change.host)
            }
        }
        relayedLogger.notice("operator statement about a host", metadata: [
            "audit": "true", "host": "\(change.host)", "change": "\(change.change.rawValue)",
            "operator": "\(change.operatorName)", "sender": "\(sender)", "applied": "\(applied)",
        ])
        if applied { hostListDidChange() }
    }

    private func hostListDidChange() {
        hostListChanged.store(true, ordering: .releasing)
        hostListWrites.continuation.yield()
    }

    /// Writes the host list after each change, until cancelled (`run` writes a last change after);
    /// a write that failed is tried again every five seconds until one succeeds.
    private func keepHostList() async {
        for await _ in hostListWrites.stream {
            while !writeHostListIfChanged() {
                guard (try? await Task.sleep(for: .seconds(5))) != nil else { return }
            }
        }
    }

    /// False when the write failed (the change is still to be written).
    @discardableResult
    private func writeHostListIfChanged() -> Bool {
        guard hostListChanged.exchange(false, ordering: .acquiring), let store else { return true }
        let saved = inventory.withLock { inventory in
            HostStateStore.Saved(
                learned: inventory.hosts.values.filter { !$0.configured }.map(\.id),
                confirmedDown: inventory.hosts.values.filter(\.confirmedDown).map(\.id)
            )
        }
        do {
            try store.save(saved)
            return true
        } catch {
            hostListChanged.store(true, ordering: .relaxed)
            logger.error("cannot keep the host list; after a restart, learned hosts are forgotten", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The inventory as it is now, for listings and fencectl.
    public var currentInventory: Inventory { inventory.withLock { $0 } }

    // MARK: - FenceBackend

    public func perform(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> FenceOutcome {
        // One domain at a time: keyed by its UUID when the inventory knows it.
        let placement = place(target)
        let key = placement.uuids.count == 1 ? placement.uuids.first! : "\(target)"
        let outcome = await serializer.withExclusiveAccess(to: key, until: deadline) { () async -> FenceOutcome in
            guard ContinuousClock.now < deadline else {
                return .failed(FenceFailure(.deadlineExceeded, "the request's deadline passed before it could run"))
            }
            let placement = place(target)
            let keys = placement.uuids.count == 1 ? [placement.uuids.first!, "\(target)"] : ["\(target)"]
            let actedAt = actedOn.withLock { acted in keys.compactMap { acted[$0] }.max() }
            let decision = RoutingRules.decide(action, target, placement: placement, trusted: ContinuousClock.now - started >= settings.warmUp,
                                               actedAt: actedAt)
            logger.debug("routing", metadata: ["domain": "\(target)", "op": "\(action.rawValue)", "decision": "\(decision)"])
            let outcome = await execute(decision, target: target, placement: placement, deadline: deadline)
            if action != .status { noteActed(on: keys) }
            return outcome
        }
        return outcome ?? .failed(FenceFailure(.deadlineExceeded, "waited past the deadline behind another request for \(target)"))
    }

    public func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo] {
        let now = ContinuousClock.now
        let inventory = currentInventory
        var merged: [String: DomainInfo] = [:]
        for host in inventory.hosts.values where host.liveness(now: now, freshness: inventory.freshness) == .live {
            for domain in host.domains.values {
                // A domain on two hosts is listed once, running if it runs on either.
                if let known = merged[domain.uuid], !known.state.isOff { continue }
                merged[domain.uuid] = domain
            }
        }
        return Array(merged.values)
    }

    public func checkHealth(deadline: ContinuousClock.Instant) async -> FenceOutcome {
        guard bus.connection.isConnected else { return .failed(FenceFailure(.hypervisorUnavailable, "not connected to the broker")) }
        let now = ContinuousClock.now
        let inventory = currentInventory
        let live = inventory.hosts.values.filter { $0.liveness(now: now, freshness: inventory.freshness) == .live }
        return live.isEmpty ? .failed(FenceFailure(.hypervisorUnavailable, "no host is live")) : .success
    }

    private func noteActed(on keys: [String]) {
        let now = ContinuousClock.now
        actedOn.withLock { acted in
            for key in keys { acted[key] = now }
            // Only the latest acts matter (the inventory catches up within a second): bounded.
            if acted.count > 4096 { acted = acted.filter { now - $0.value < .seconds(60) } }
        }
    }

    /// On a copy: the scan of every host's domains (100,000 with a thousand hosts) must not hold
    /// the lock under which the connection's thread applies each message.
    private func place(_ target: DomainTarget) -> Placement {
        RoutingRules.place(target, in: currentInventory, now: .now)
    }

    // MARK: - Carrying out a decision

    private func execute(_ decision: RoutingDecision, target: DomainTarget, placement: Placement, deadline: ContinuousClock.Instant) async -> FenceOutcome {
        let belief = Belief(uuid: placement.uuids.first, believedRunning: Set(placement.running),
                                      onDownHosts: !placement.onDownHosts.isEmpty, lastRanOn: placement.lastRanOn)
        func ask(_ action: FenceAction, _ hosts: [String]) async -> [CommandReply] {
            await send(action, target: target, uuid: belief.uuid, to: hosts, deadline: deadline)
        }
        func confirmed(_ action: FenceAction, _ outcome: FenceOutcome, _ hosts: [String]) -> FenceOutcome {
            if case .failed(let failure) = outcome {
                logger.warning("no confirmation", metadata: ["domain": "\(target)", "op": "\(action.rawValue)", "hosts": "\(hosts)", "error": "\(failure)"])
            }
            return outcome
        }
        /// Starts it on `host` and checks that it runs there.
        func start(on host: String) async -> FenceOutcome {
            let on = Confirmation.outcome(of: .on, given: Belief(uuid: belief.uuid), replies: await ask(.on, [host]))
            return confirmed(.on, on, [host])
        }
        switch decision {
        case .answer(let outcome):
            return outcome
        case .command(let action, let hosts):
            return confirmed(action, Confirmation.outcome(of: action, given: belief, replies: await ask(action, hosts)), hosts)
        case .reboot(let hosts):
            let (off, restartOn) = Confirmation.reboot(given: belief, replies: await ask(.off, hosts))
            guard confirmed(.off, off, hosts) == .success, let restartOn else { return off }
            let on = await start(on: restartOn)
            if on != .success {
                // As on one host: the domain was fenced; a failed restart does not undo that.
                logger.warning("reboot: the domain was fenced but did not start again", metadata: ["domain": "\(target)", "host": "\(restartOn)", "outcome": "\(on)"])
            }
            return .success
        case .start(let hosts):
            let (found, startOn) = Confirmation.start(given: belief, replies: await ask(.status, hosts))
            guard confirmed(.on, found, hosts) == .success, let startOn else { return found }
            return await start(on: startOn)
        }
    }

    /// Sends one command per host, all at once, and waits for every answer (or the deadline). A
    /// command whose answer may have been lost with a broker node goes again (`CommandsInFlight`).
    private func send(_ action: FenceAction, target: DomainTarget, uuid: String?, to hosts: [String], deadline: ContinuousClock.Instant) async -> [CommandReply] {
        guard let (_, requester) = subscription.withLock({ $0 }) else {
            return hosts.map { CommandReply(host: $0, result: .failure(FenceFailure(.hypervisorUnavailable, "not subscribed to the bus"))) }
        }
        let wallDeadline = WallClock.deadline(for: deadline)
        let epochs = currentInventory.hosts.mapValues(\.epoch)
        return await withTaskGroup(of: CommandReply.self) { group in
            for host in hosts {
                group.addTask {
                    let command = FenceCommand(id: self.bus.nextID(), host: host, action: action, target: "\(target)", uuid: uuid, deadline: wallDeadline, issuer: self.settings.routerID)
                    // Copies name the agent's run the first one went to: a restarted agent refuses them.
                    var copy = command
                    copy.agentEpoch = epochs[host] ?? 0
                    let sent = ContinuousClock.now
                    let (token, resend) = self.inFlight.register(host)
                    defer { self.inFlight.unregister(token) }
                    do throws(AMQPError) {
                        // Only this command's result from this host answers it; anything else under
                        // its correlation id (dropped by the bus checks, or not this result) leaves it
                        // waiting for the real answer until its deadline.
                        let result = try await requester.request(to: self.bus.addresses.commands(for: host), deadline: deadline, resendingOn: resend, accepting: { [bus = self.bus, setAside = self.setAside] reply -> CommandResult? in
                            guard let envelope = bus.open(reply) else { return nil }
                            guard let result = CommandAnswer.result(of: envelope, answering: command) else {
                                setAside.note(.notThisResult, source: envelope.sender, metadata: [
                                    "host": "\(host)", "command": "\(command.id)", "sender": "\(envelope.sender)", "kind": "\(envelope.message.kind)",
                                ])
                                return nil
                            }
                            return result
                        }) { [copy] (number: Int) throws(AMQPError) in
                            try self.bus.amqpMessage(.command(number == 0 ? command : copy), for: .one(host), timeToLive: max(deadline - .now, .milliseconds(1)))
                        }
                        Timer(label: "fence_command_rtt_seconds", dimensions: [("host", host)]).record(duration: .now - sent)
                        return CommandReply(host: host, result: .success(result))
                    } catch {
                        Counter(label: "fence_commands_unanswered_total", dimensions: [("host", host)]).increment()
                        let code: FenceFailure.Code = error.code == .timedOut ? .timedOut : .hypervisorUnavailable
                        return CommandReply(host: host, result: .failure(FenceFailure(code, "\(host): \(error)")))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
    }
}
