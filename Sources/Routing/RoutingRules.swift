import FenceCore

/// Where a domain is, as far as the inventory can tell.
public struct Placement: Hashable, Sendable {
    /// Live hosts where it runs (any state but shut off).
    public var running: [String] = []
    /// Live hosts where it is defined and shut off.
    public var definedOff: [String] = []
    /// Hosts that are expected but not live and list it: its state there is unknown.
    public var onStaleHosts: [String] = []
    /// Hosts confirmed down by an operator that list it: it counts as off there.
    public var onDownHosts: [String] = []
    /// Expected hosts that are neither live nor confirmed down, whether or not they list it.
    public var staleHosts: [String] = []
    /// Every live host, whether or not it lists it: those asked before anything is called off.
    public var liveHosts: [String] = []
    /// Every UUID the target matched (more than one: a name used by different domains).
    public var uuids: Set<String> = []
    /// Where it last ran, among the live hosts that hold it.
    public var lastRanOn: String?
    /// When the inventory last showed it running on each live host where it runs, the earliest
    /// of them (nil if it runs on none, or one has never shown it running).
    public var runningSeenAt: ContinuousClock.Instant?
    /// How many hosts are expected at all.
    public var expectedHosts = 0

    public var liveHolders: [String] { (running + definedOff).sorted() }
}

/// What to do with a request. Absence is never taken from the inventory: whatever claims a
/// domain off (`off`, `reboot`, a `status` of off, and the check before `on`) asks every live
/// host, and each agent reads libvirt under the domain's lock; `Confirmation` adds the replies up.
public enum RoutingDecision: Hashable, Sendable {
    /// Answer at once, without asking any agent.
    case answer(FenceOutcome)
    /// Send `action` to each of these hosts; `Confirmation.outcome` decides from every reply.
    case command(FenceAction, hosts: [String])
    /// Off on each of these hosts, then on again where the off found it running (of two, where it
    /// last ran); a domain that ran nowhere stays off.
    case reboot(hosts: [String])
    /// Status on each of these hosts; unless it runs on one, start it on one that holds it shut
    /// off (where it last ran, if that is one of them).
    case start(hosts: [String])
}

/// The routing rules (Docs/routing.md has them as a table, each row with its test). Pure.
public enum RoutingRules {
    /// Places `target` in `inventory` as of `now`.
    public static func place(_ target: DomainTarget, in inventory: Inventory, now: ContinuousClock.Instant) -> Placement {
        var placement = Placement()
        var lastRun: (host: String, at: ContinuousClock.Instant)?
        // When each live host where it runs last showed it running (nil: never).
        var runningSeen: [ContinuousClock.Instant?] = []
        for host in inventory.hosts.values.sorted(by: { $0.id < $1.id }) {
            let liveness = host.liveness(now: now, freshness: inventory.freshness)
            switch liveness {
            case .stale: placement.staleHosts.append(host.id)
            case .live: placement.liveHosts.append(host.id)
            case .confirmedDown: break
            }
            guard let domain = host.domains.values.first(where: target.matches) else { continue }
            placement.uuids.insert(domain.uuid)
            switch liveness {
            case .live:
                if domain.state.isOff {
                    placement.definedOff.append(host.id)
                } else {
                    placement.running.append(host.id)
                    runningSeen.append(host.lastRunning[domain.uuid])
                }
                if let at = host.lastRunning[domain.uuid], lastRun.map({ at > $0.at }) ?? true { lastRun = (host.id, at) }
            case .stale:
                placement.onStaleHosts.append(host.id)
            case .confirmedDown:
                placement.onDownHosts.append(host.id)
            }
        }
        placement.lastRanOn = lastRun?.host
        placement.expectedHosts = inventory.hosts.count
        placement.runningSeenAt = runningSeen.contains(nil) ? nil : runningSeen.compactMap { $0 }.min()
        return placement
    }

    /// - Parameters:
    ///   - trusted: false while the router cannot yet vouch for the absence of a domain (just
    ///     started, or no host known): "unknown" is then a failure, never "off".
    ///   - actedAt: when this router last finished a command that changes the domain (off, on,
    ///     reboot): until the inventory shows it running again after that, status asks the agents.
    public static func decide(_ action: FenceAction, _ target: DomainTarget, placement: Placement, trusted: Bool,
                              actedAt: ContinuousClock.Instant? = nil) -> RoutingDecision {
        func fail(_ code: FenceFailure.Code, _ message: String) -> RoutingDecision {
            .answer(.failed(FenceFailure(code, message)))
        }
        if placement.uuids.count > 1 {
            return fail(.operationFailed, "\(target) names \(placement.uuids.count) different domains; use its UUID")
        }
        // Running on a live host (fresh heartbeat, complete and current inventory): on, from the
        // inventory, without a round trip — a wrong ON is harmless, an OFF always takes the
        // agents' word. Unless this router acted on it since the inventory last showed it
        // running (its delta may still be on its way): then ask where it runs.
        if action == .status, !placement.running.isEmpty {
            if let seen = placement.runningSeenAt, actedAt.map({ seen > $0 }) ?? true { return .answer(.success) }
            return .command(.status, hosts: placement.running)
        }
        // Anything else rests on every expected host: one that is not live (never heard since this
        // router started, silent, without a snapshot of its current run) could hold the domain,
        // since with shared storage every host defines it.
        guard placement.staleHosts.isEmpty else {
            if !placement.onStaleHosts.isEmpty {
                return fail(.hypervisorUnavailable, "\(target) was last seen on \(placement.onStaleHosts.joined(separator: ", ")), whose state is unknown now")
            }
            return fail(.hypervisorUnavailable, "host(s) \(placement.staleHosts.joined(separator: ", ")) are not live and could hold \(target)")
        }
        guard placement.expectedHosts > 0 else { return fail(.hypervisorUnavailable, "\(target): the router knows no host") }
        let known = !placement.liveHolders.isEmpty || !placement.onDownHosts.isEmpty
        guard known || trusted else {
            return fail(.hypervisorUnavailable, "\(target) is on no live host and the router cannot vouch for its absence yet")
        }
        let everywhere = placement.liveHosts
        guard !everywhere.isEmpty else {
            // Every expected host is confirmed down: what they held counts as off.
            switch action {
            case .status: return .answer(.off)
            case .off, .reboot: return known ? .answer(.success) : fail(.notFound, "no host has \(target)")
            case .on: return fail(.notFound, "\(target): no live host to start it on")
            }
        }
        switch action {
        case .status, .off: return .command(action, hosts: everywhere)
        case .reboot: return .reboot(hosts: everywhere)
        case .on: return .start(hosts: everywhere)
        }
    }
}
