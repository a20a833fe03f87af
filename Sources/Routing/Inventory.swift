import FenceBus
import FenceCore

/// What the router knows of one hypervisor host, from its agent's messages.
public struct HostView: Hashable, Sendable {
    public enum Liveness: Hashable, Sendable {
        /// Heard within the freshness window, libvirt readable, a snapshot of this agent run received:
        /// its domain list can be trusted.
        case live
        /// Expected but not trustworthy now (silent, libvirt lost, no snapshot yet).
        case stale(reason: String)
        /// An operator confirmed the host is down: its domains count as off.
        case confirmedDown
    }

    public let id: String
    public internal(set) var epoch: UInt64 = 0
    public internal(set) var sequence: UInt64 = 0
    /// When (router's clock) the last accepted message arrived.
    public internal(set) var lastHeard: ContinuousClock.Instant?
    public internal(set) var libvirtConnected = false
    /// A snapshot of the current epoch arrived and nothing was missed since: until then, the
    /// domain list cannot be trusted.
    public internal(set) var hasSnapshot = false
    /// Why the domain list waits for a snapshot, while `hasSnapshot` is false.
    public internal(set) var awaitingSnapshot = "no snapshot yet from this agent run"
    public internal(set) var domains: [String: DomainInfo] = [:]
    /// When each domain was last seen running here (router's clock), to pick "where it last ran".
    public internal(set) var lastRunning: [String: ContinuousClock.Instant] = [:]
    public internal(set) var confirmedDown = false
    /// Configured, as opposed to learned from the bus.
    public internal(set) var configured = false

    init(id: String) {
        self.id = id
    }

    public func liveness(now: ContinuousClock.Instant, freshness: Duration) -> Liveness {
        if confirmedDown { return .confirmedDown }
        guard let lastHeard else { return .stale(reason: "never heard") }
        let silence = now - lastHeard
        guard silence <= freshness else { return .stale(reason: "silent for \(silence.millisecondsText) ms") }
        guard libvirtConnected else { return .stale(reason: "its agent cannot reach libvirt") }
        guard hasSnapshot else { return .stale(reason: awaitingSnapshot) }
        return .live
    }
}

/// The router's picture of every host and its domains, built from the bus. Pure: every change
/// passes in the time it happens (the router's monotonic clock).
public struct Inventory: Sendable {
    /// A host counts as live for this long after its last message (heartbeats come every second).
    public let freshness: Duration
    public private(set) var hosts: [String: HostView] = [:]

    public init(freshness: Duration = .seconds(3), configuredHosts: [String] = []) {
        self.freshness = freshness
        for id in configuredHosts {
            var host = HostView(id: id)
            host.configured = true
            hosts[id] = host
        }
    }

    /// Why a message was not applied (it is older than what we have, or cannot be true).
    public enum Ignored: Hashable, Sendable {
        case olderRun
        case outOfOrder
        case notInventory
        /// Its run began after the message was sent: an epoch in the future would make every real
        /// message of that host "an older run".
        case epochAfterSending
    }

    /// What applying one message did.
    public struct Applied: Hashable, Sendable {
        /// Why it changed nothing; nil when it was applied.
        public var ignored: Ignored?
        /// Its host was not in the inventory before.
        public var learned = false
        /// Its host was confirmed down and spoke: the confirmation no longer holds.
        public var endedConfirmation = false
    }

    /// Applies one inventory message: whether it was applied (or why not), and what it changed
    /// about its host's standing.
    ///
    /// - Parameters:
    ///   - sentAt: the sender's wall clock when it sealed the message (ms).
    ///   - receivedAt: this router's wall clock now (ms).
    ///   - now: this router's monotonic clock now. The host counts as heard when the message was
    ///     sent, if that is earlier than its arrival: a bus that delays messages does not present an
    ///     old view as live.
    @discardableResult
    public mutating func apply(_ message: BusMessage, sentAt: UInt64, receivedAt: UInt64, now: ContinuousClock.Instant) -> Applied {
        let (id, epoch, sequence): (String, UInt64, UInt64)
        switch message {
        case .snapshot(let snapshot): (id, epoch, sequence) = (snapshot.host, snapshot.epoch, snapshot.sequence)
        case .delta(let delta): (id, epoch, sequence) = (delta.host, delta.epoch, delta.sequence)
        case .heartbeat(let heartbeat): (id, epoch, sequence) = (heartbeat.host, heartbeat.epoch, heartbeat.sequence)
        case .command, .result, .hostState, .snapshotRequest: return Applied(ignored: .notInventory)
        }
        if epoch > sentAt { return Applied(ignored: .epochAfterSending) }
        guard let index = hosts.index(forKey: id) else {
            var host = HostView(id: id)
            var applied = Self.apply(message, epoch: epoch, sequence: sequence, sentAt: sentAt, receivedAt: receivedAt, now: now, to: &host)
            if applied.ignored == nil {
                hosts[id] = host
                applied.learned = true
            }
            return applied
        }
        // In place: a copy of the view would copy its domain list on every delta.
        return Self.apply(message, epoch: epoch, sequence: sequence, sentAt: sentAt, receivedAt: receivedAt, now: now, to: &hosts.values[index])
    }

    /// Applies one host's message to its view; it changes nothing when it returns why it was ignored.
    private static func apply(_ message: BusMessage, epoch: UInt64, sequence: UInt64, sentAt: UInt64, receivedAt: UInt64,
                              now: ContinuousClock.Instant, to host: inout HostView) -> Applied {
        if epoch < host.epoch { return Applied(ignored: .olderRun) }
        if epoch > host.epoch {
            // A new run of the agent: nothing it said before counts until its first snapshot.
            host.epoch = epoch
            host.sequence = 0
            host.hasSnapshot = false
            host.awaitingSnapshot = "no snapshot yet from this agent run"
            host.domains = [:]
        } else if sequence <= host.sequence {
            return Applied(ignored: .outOfOrder)
        } else if sequence != host.sequence + 1, host.hasSnapshot {
            // A message was lost (the broker or this router was away, or it expired): a delta may be
            // missing, so the list is doubtful until the next snapshot replaces it.
            host.hasSnapshot = false
            host.awaitingSnapshot = "messages \(host.sequence + 1)…\(sequence - 1) missed; waiting for a snapshot"
        }
        host.sequence = sequence
        let age = receivedAt > sentAt ? Duration.milliseconds(Int64(clamping: receivedAt - sentAt)) : .zero
        host.lastHeard = max(host.lastHeard ?? now - age, now - age)
        // Whatever the operator said, a host that speaks is not down.
        let endedConfirmation = host.confirmedDown
        host.confirmedDown = false
        switch message {
        case .snapshot(let snapshot):
            host.libvirtConnected = snapshot.libvirtConnected
            host.hasSnapshot = snapshot.libvirtConnected
            host.domains = Dictionary(snapshot.domains.map { ($0.uuid, $0) }, uniquingKeysWith: { $1 })
            for domain in snapshot.domains where !domain.state.isOff { host.lastRunning[domain.uuid] = now }
        case .delta(let delta):
            switch delta.change {
            case .updated(let domain):
                host.domains[domain.uuid] = domain
                if !domain.state.isOff { host.lastRunning[domain.uuid] = now }
            case .removed(let uuid, _):
                host.domains[uuid] = nil
            case .unreadable(_, let name):
                host.hasSnapshot = false
                host.awaitingSnapshot = "\(name) could not be read after its event; waiting for a snapshot"
            }
        case .heartbeat(let heartbeat):
            host.libvirtConnected = heartbeat.libvirtConnected
            if !heartbeat.libvirtConnected {
                host.hasSnapshot = false
                host.awaitingSnapshot = "its libvirt connection was lost; waiting for a snapshot"
            }
        case .command, .result, .hostState, .snapshotRequest:
            break
        }
        return Applied(endedConfirmation: endedConfirmation)
    }

    /// An operator says the host is down (powered off, fenced by the host cluster): its domains
    /// count as off until it speaks again.
    public mutating func confirmDown(_ id: String) {
        var host = hosts[id] ?? HostView(id: id)
        host.confirmedDown = true
        hosts[id] = host
    }

    /// Expects a host known from before (kept across a router restart) that has not spoken yet.
    public mutating func expect(_ id: String) {
        if hosts[id] == nil { hosts[id] = HostView(id: id) }
    }

    /// Stops expecting a host (decommissioned). A configured host cannot be forgotten.
    @discardableResult
    public mutating func forget(_ id: String) -> Bool {
        guard let host = hosts[id], !host.configured else { return false }
        hosts[id] = nil
        return true
    }

    /// Every expected host: configured or learned, and not forgotten.
    public var expectedHosts: [String] { hosts.keys.sorted() }
}
