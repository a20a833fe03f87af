import AMQP
import BusClient
import FenceBus
import FenceCore
import Libvirt
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// fence-hostd's work on one hypervisor host: publish the host's inventory on the bus (a delta at
/// once for every libvirt lifecycle event, a snapshot at start, after every reconnect and every
/// few seconds, a heartbeat every second) and execute the fence commands sent to this host.
public final class HostAgent: Service {
    public struct Settings: Sendable {
        public var hostID: String
        public var snapshotInterval: Duration
        public var heartbeatInterval: Duration

        public init(hostID: String, snapshotInterval: Duration, heartbeatInterval: Duration) {
            self.hostID = hostID
            self.snapshotInterval = snapshotInterval
            self.heartbeatInterval = heartbeatInterval
        }
    }

    private enum Publication: Sendable {
        case snapshot(reason: String)
        case delta(name: String, uuid: String, event: LifecycleEvent, at: UInt64)
        case heartbeat

        var isHeartbeat: Bool { if case .heartbeat = self { true } else { false } }
    }

    public let settings: Settings
    /// This run of the agent; the router orders our messages by (epoch, sequence).
    public let epoch: UInt64
    private let libvirt: LibvirtConnection
    private let fencer: HypervisorFencer
    private let bus: BusEndpoint
    private let ledger = CommandLedger()
    private let sequence = Mutex<UInt64>(0)
    private let lastAskedSnapshot = Mutex<ContinuousClock.Instant?>(nil)
    private let publishing = Mutex(true)
    private let work: AsyncStream<Publication>
    private let workSink: AsyncStream<Publication>.Continuation
    private let commands: Mutex<BusSubscription?> = Mutex(nil)
    private let logger: Logger

    public init(settings: Settings, libvirt: LibvirtConnection, bus: BusEndpoint, logger: Logger) {
        self.settings = settings
        self.libvirt = libvirt
        self.bus = bus
        var logger = logger
        logger[metadataKey: "host"] = "\(settings.hostID)"
        self.logger = logger
        epoch = WallClock.now()
        fencer = HypervisorFencer(hypervisors: [LibvirtHypervisor(connection: libvirt)], logger: logger)
        (work, workSink) = AsyncStream.makeStream(of: Publication.self)
    }

    /// Subscribes to this host's commands; the agent is ready once this returns.
    public func prepare(deadline: ContinuousClock.Instant) async throws(AMQPError) {
        let stream = try await bus.subscribe(bus.addresses.commands(for: settings.hostID), deadline: deadline)
        commands.withLock { $0 = stream }
    }

    public func run() async throws {
        guard let commands = commands.withLock({ $0 }) else {
            throw AMQPError(.invalidConfiguration, "HostAgent.prepare must succeed before run")
        }
        // The first snapshot follows libvirt's first `connected` event, which is already waiting.
        logger.info("agent running", metadata: ["epoch": "\(epoch)", "commands": "\(bus.addresses.commands(for: settings.hostID))"])
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.publishInOrder() }
                group.addTask { await self.followLibvirt() }
                group.addTask { await self.followBroker() }
                group.addTask { await self.every(self.settings.snapshotInterval) { .snapshot(reason: "periodic") } }
                group.addTask { await self.every(self.settings.heartbeatInterval) { .heartbeat } }
                group.addTask { await self.serve(commands) }
                group.addTask { try? await self.bus.drops.run() }
            }
        }
        workSink.finish()
        logger.info("agent stopped")
    }

    // MARK: - Inventory

    /// The one place that reads libvirt for the bus and publishes, one item at a time, so that
    /// sequence numbers follow the order of the readings.
    private func publishInOrder() async {
        for await item in work {
            let message: BusMessage
            switch item {
            case .snapshot(let reason):
                message = .snapshot(await snapshot())
                logger.debug("snapshot", metadata: ["reason": "\(reason)"])
            case .delta(let name, let uuid, let event, let time):
                message = .delta(await delta(name: name, uuid: uuid, event: event, at: time))
            case .heartbeat:
                let alive = (try? await libvirt.ping(deadline: .now + .seconds(1))) != nil
                message = .heartbeat(Heartbeat(host: settings.hostID, epoch: epoch, sequence: nextSequence(), libvirtConnected: alive, domainCount: 0))
            }
            await publish(message, timeToLive: item.isHeartbeat ? settings.heartbeatInterval * 5 : settings.snapshotInterval * 3)
        }
    }

    private func snapshot() async -> InventorySnapshot {
        do {
            let domains = try await libvirt.listDomains(deadline: .now + .seconds(10))
            Gauge(label: "fence_agent_snapshot_domains").record(domains.count)
            return InventorySnapshot(host: settings.hostID, epoch: epoch, sequence: nextSequence(), libvirtConnected: true, domains: domains)
        } catch {
            logger.warning("cannot read the inventory", metadata: ["error": "\(error)"])
            return InventorySnapshot(host: settings.hostID, epoch: epoch, sequence: nextSequence(), libvirtConnected: false, domains: [])
        }
    }

    private func delta(name: String, uuid: String, event: LifecycleEvent, at time: UInt64) async -> InventoryDelta {
        let change: InventoryDelta.Change
        do {
            // With its persistence, as a snapshot has it (a definition event may change it).
            if let domain = try await libvirt.lookup(.uuid(uuid), persistence: true, deadline: .now + .seconds(5)) {
                change = .updated(domain)
            } else {
                change = .removed(uuid: uuid, name: name)
            }
        } catch {
            // Could not read it: not a removal. The routers doubt this host until the snapshot asked for here.
            logger.warning("cannot read a domain after its event", metadata: ["domain": "\(name)", "error": "\(error)"])
            workSink.yield(.snapshot(reason: "unreadable event"))
            change = .unreadable(uuid: uuid, name: name)
        }
        return InventoryDelta(host: settings.hostID, epoch: epoch, sequence: nextSequence(), change: change, event: "\(event)", eventTime: time)
    }

    private func publish(_ message: BusMessage, timeToLive: Duration) async {
        do {
            try await bus.publish(message, to: bus.addresses.inventory, for: .everyRouter, timeToLive: timeToLive, deadline: .now + .seconds(5))
            Counter(label: "fence_agent_published_total", dimensions: [("kind", message.kind)]).increment()
            if publishing.withLock({ $0 }) == false {
                publishing.withLock { $0 = true }
                logger.info("publishing to the broker again")
            }
        } catch {
            let wasPublishing = publishing.withLock { state in
                defer { state = false }
                return state
            }
            if wasPublishing { logger.warning("cannot publish to the broker", metadata: ["error": "\(error)"]) }
        }
    }

    private func nextSequence() -> UInt64 {
        sequence.withLock { sequence in
            sequence += 1
            return sequence
        }
    }

    private func followLibvirt() async {
        for await event in libvirt.events {
            switch event {
            case .connected(let generation):
                workSink.yield(.snapshot(reason: "libvirt connection \(generation)"))
            case .disconnected:
                workSink.yield(.snapshot(reason: "libvirt connection lost"))
            case .lifecycle(let name, let uuid, let event, _):
                workSink.yield(.delta(name: name, uuid: uuid, event: event, at: WallClock.now()))
            }
        }
    }

    private func followBroker() async {
        for await event in bus.connection.events {
            if case .connected(let generation) = event, generation > 1 {
                workSink.yield(.snapshot(reason: "broker connection \(generation)"))
            }
        }
    }

    private func every(_ interval: Duration, _ item: @Sendable () -> Publication) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            workSink.yield(item())
        }
    }

    /// A router that just started wants the inventory now. At most one such snapshot a second:
    /// anyone on the broker could ask, and each one reads every domain.
    private func snapshotAsked(by router: String) {
        let now = ContinuousClock.now
        let due = lastAskedSnapshot.withLock { last in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        workSink.yield(.snapshot(reason: "asked by \(router)"))
    }

    // MARK: - Commands

    private func serve(_ commands: BusSubscription) async {
        await withDiscardingTaskGroup { group in
            for await (envelope, message) in commands {
                group.addTask { await self.handle(envelope, message) }
            }
        }
    }

    private func handle(_ envelope: BusEnvelope, _ message: AMQPMessage) async {
        if case .snapshotRequest(let request) = envelope.message {
            snapshotAsked(by: request.router)
            return
        }
        guard case .command(let command) = envelope.message, command.host == settings.hostID else {
            logger.warning("dropped bus message: not a command for this host", metadata: ["from": "\(envelope.sender)", "id": "\(envelope.id)"])
            return
        }
        let started = ContinuousClock.now
        let refusal = command.agentEpoch.flatMap { run in
            run == epoch ? nil : CommandResult(commandID: command.id, host: settings.hostID, outcome: .failed(
                code: "agent-restarted",
                message: "a copy of a command sent to run \(run) of this agent; this is run \(epoch), which never saw it, and whether that run acted is unknown: not executed"
            ), observed: nil)
        }
        let (result, repeated) = await ledger.result(for: command.id, now: .now, unlessNew: refusal) { await self.execute(command) }
        var metadata: Logger.Metadata = [
            "command": "\(command.id)", "op": "\(command.action.rawValue)", "domain": "\(command.target)",
            "issuer": "\(command.issuer)", "outcome": "\(result.outcome)", "duration-ms": "\((ContinuousClock.now - started).millisecondsText)",
        ]
        if case .failed(_, let message) = result.outcome { metadata["error"] = "\(message)" }
        if repeated { metadata["repeated"] = "true" }
        logger.info("command answered", metadata: metadata)
        Counter(label: "fence_agent_commands_total", dimensions: [
            ("op", command.action.rawValue), ("outcome", result.outcome.label), ("repeated", repeated ? "true" : "false"),
        ]).increment()
        Timer(label: "fence_agent_command_duration_seconds", dimensions: [("op", command.action.rawValue)]).record(duration: .now - started)
        let remaining = min(max(WallClock.difference(from: WallClock.now(), to: command.deadline), 1000), Int64(FenceCommand.longestLifetime))
        do {
            try await bus.reply(to: message, from: envelope.sender, with: .result(result), timeToLive: .milliseconds(remaining), deadline: .now + .seconds(5))
        } catch {
            logger.warning("cannot send a command's result", metadata: ["command": "\(command.id)", "error": "\(error)"])
        }
    }

    /// Runs a command with the single-host rules; reports the domain as read after acting, under its lock.
    private func execute(_ command: FenceCommand) async -> CommandResult {
        let now = WallClock.now()
        if let refusal = command.refusal(now: now) {
            return CommandResult(commandID: command.id, host: settings.hostID, outcome: refusal, observed: nil)
        }
        let deadline = WallClock.instant(for: command.deadline, now: now)
        // The domain the router means: by its UUID when it names one, so that a name now used by
        // another domain here is never acted on in its place.
        let target = DomainTarget(command.uuid ?? command.target)
        let (outcome, before, observed) = await fencer.performObserving(command.action, on: target, deadline: deadline)
        return CommandResult(commandID: command.id, host: settings.hostID, outcome: CommandResult.Outcome(outcome), before: before, observed: observed)
    }
}
