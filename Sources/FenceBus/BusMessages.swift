import FenceCore

/// A host's whole inventory: sent at start, after every reconnect and every few seconds.
public struct InventorySnapshot: Hashable, Sendable {
    public var host: String
    /// Identifies one run of the agent (its start, in ms since the Unix epoch): sequence numbers
    /// restart with it.
    public var epoch: UInt64
    public var sequence: UInt64
    /// Whether the agent could read libvirt; if not, `domains` is empty and means nothing.
    public var libvirtConnected: Bool
    public var domains: [DomainInfo]

    public init(host: String, epoch: UInt64, sequence: UInt64, libvirtConnected: Bool, domains: [DomainInfo]) {
        self.host = host
        self.epoch = epoch
        self.sequence = sequence
        self.libvirtConnected = libvirtConnected
        self.domains = domains
    }
}

/// One domain changed (a libvirt lifecycle event), sent at once.
public struct InventoryDelta: Hashable, Sendable {
    public enum Change: Hashable, Sendable {
        case updated(DomainInfo)
        /// Undefined, or a transient domain that stopped: libvirt said it is gone.
        case removed(uuid: String, name: String)
        /// An event came, but the domain could not be read after it (a timeout, a libvirt
        /// error): its state is unknown, and so is the host's list until the next snapshot.
        case unreadable(uuid: String, name: String)
    }

    public var host: String
    public var epoch: UInt64
    public var sequence: UInt64
    public var change: Change
    /// libvirt's event, for logs (`stopped`, `started`, …).
    public var event: String
    /// When libvirt's event reached the agent (ms since 1970, the agent's clock): how old the
    /// router's view is, for logs and the convergence benchmark.
    public var eventTime: UInt64

    public init(host: String, epoch: UInt64, sequence: UInt64, change: Change, event: String, eventTime: UInt64) {
        self.host = host
        self.epoch = epoch
        self.sequence = sequence
        self.change = change
        self.event = event
        self.eventTime = eventTime
    }
}

/// "Still here", every second.
public struct Heartbeat: Hashable, Sendable {
    public var host: String
    public var epoch: UInt64
    public var sequence: UInt64
    public var libvirtConnected: Bool
    public var domainCount: Int

    public init(host: String, epoch: UInt64, sequence: UInt64, libvirtConnected: Bool, domainCount: Int) {
        self.host = host
        self.epoch = epoch
        self.sequence = sequence
        self.libvirtConnected = libvirtConnected
        self.domainCount = domainCount
    }
}

/// An order to one host's agent.
public struct FenceCommand: Hashable, Sendable {
    /// Unique; an agent executes a repeated id once and answers with the first result again.
    public var id: String
    public var host: String
    public var action: FenceAction
    /// The domain by name or UUID, as the requester named it.
    public var target: String
    /// The UUID the requester means (a router knows it from the inventory): the agent acts on the
    /// domain with that UUID, whatever it is named there; nil: on `target`.
    public var uuid: String?
    /// Wall-clock ms since the Unix epoch; an agent refuses the command after it.
    public var deadline: UInt64
    /// Who asked (a router id, or fencectl).
    public var issuer: String
    /// Set on a copy sent again: the run of the agent (its epoch; 0 when unknown) that the first
    /// copy went to. Another run refuses the copy unless it has the id already, since it cannot
    /// know whether that run acted.
    public var agentEpoch: UInt64?

    public init(id: String, host: String, action: FenceAction, target: String, uuid: String? = nil, deadline: UInt64, issuer: String,
                agentEpoch: UInt64? = nil) {
        self.id = id
        self.host = host
        self.action = action
        self.target = target
        self.uuid = uuid
        self.deadline = deadline
        self.issuer = issuer
        self.agentEpoch = agentEpoch
    }
}

extension FenceCommand {
    /// The furthest ahead a deadline may lie (ms): a router's requests live at most 300 s. A command
    /// that claims longer is not from one, and would hold the domain's lock for as long.
    public static let longestLifetime: UInt64 = 600_000

    /// Why an agent must not execute this command at `now` (its wall clock, ms), if it must not.
    public func refusal(now: UInt64) -> CommandResult.Outcome? {
        if now >= deadline {
            return .failed(code: "expired", message: "the command arrived \(now - deadline) ms after its deadline; not executed")
        }
        if deadline - now > Self.longestLifetime {
            return .failed(code: "bad-deadline", message: "its deadline is \(deadline - now) ms away, more than \(Self.longestLifetime) ms; not executed")
        }
        return nil
    }
}

/// An agent's answer to a command.
public struct CommandResult: Hashable, Sendable {
    public enum Outcome: Hashable, Sendable, CustomStringConvertible {
        case success
        case off
        case failed(code: String, message: String)
        case denied

        /// The `outcome` label of the agent's counters.
        public var label: String {
            switch self {
            case .success: "success"
            case .off: "off"
            case .failed: "failed"
            case .denied: "denied"
            }
        }

        /// As `FenceOutcome` shows itself: the failure's code, not its message.
        public var description: String {
            if case .failed(let code, _) = self { return "failed(\(code))" }
            return label
        }

        public init(_ outcome: FenceOutcome) {
            switch outcome {
            case .success: self = .success
            case .off: self = .off
            case .failed(let failure): self = .failed(code: failure.code.rawValue, message: failure.message)
            case .denied: self = .denied
            }
        }
    }

    public var commandID: String
    public var host: String
    public var outcome: Outcome
    /// The domain as the agent read it under its lock before acting; nil when it was not found.
    public var before: DomainInfo?
    /// The domain as the agent read it after acting; nil when it is gone or could not be read.
    public var observed: DomainInfo?

    public init(commandID: String, host: String, outcome: Outcome, before: DomainInfo? = nil, observed: DomainInfo?) {
        self.commandID = commandID
        self.host = host
        self.outcome = outcome
        self.before = before
        self.observed = observed
    }
}

/// An operator's statement about a host, for every router (and their audit logs).
public struct HostStateChange: Hashable, Sendable {
    public enum Change: String, Hashable, Sendable {
        /// The host is down (powered off, fenced by the host cluster): its domains count as off
        /// until it speaks again.
        case confirmDown = "confirm-down"
        /// The host is gone for good: stop expecting it.
        case forget
    }

    public var host: String
    public var change: Change
    /// Who said so (the operator's login, as fencectl saw it).
    public var operatorName: String

    public init(host: String, change: Change, operatorName: String) {
        self.host = host
        self.change = change
        self.operatorName = operatorName
    }
}

/// A router that has just started asks each host it expects for a snapshot, so that it is whole
/// within about a second instead of a snapshot interval.
public struct SnapshotRequest: Hashable, Sendable {
    public var router: String

    public init(router: String) {
        self.router = router
    }
}

/// Everything that travels on the bus.
public enum BusMessage: Hashable, Sendable {
    case snapshot(InventorySnapshot)
    case delta(InventoryDelta)
    case heartbeat(Heartbeat)
    case command(FenceCommand)
    case result(CommandResult)
    case hostState(HostStateChange)
    case snapshotRequest(SnapshotRequest)

    public var kind: String {
        switch self {
        case .snapshot: "snapshot"
        case .delta: "delta"
        case .heartbeat: "heartbeat"
        case .command: "command"
        case .result: "result"
        case .hostState: "host-state"
        case .snapshotRequest: "snapshot-request"
        }
    }
}
