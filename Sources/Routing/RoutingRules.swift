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
    /// Every UUID the target matched (more than one: a name used by different domains).
    public var uuids: Set<String> = []
    /// Where it last ran, among the live hosts that hold it.
    public var lastRanOn: String?
    /// How many hosts are expected at all.
    public var expectedHosts = 0

    public var liveHolders: [String] { (running + definedOff).sorted() }
}

/// What to do with a request.
public enum RoutingDecision: Hashable, Sendable {
    /// Answer at once, without asking any agent.
    case answer(FenceOutcome)
    /// Send `action` to each of these hosts; the request succeeds only if every one confirms.
    case command(FenceAction, hosts: [String])
    /// Off everywhere it is (as `command(.off, …)`), then on at `restartOn` (nil: it was off, so it stays off).
    case reboot(offOn: [String], restartOn: String?)
}

/// The routing rules (Docs/routing.md has them as a table, each row with its test). Pure.
public enum RoutingRules {
    /// Places `target` in `inventory` as of `now`.
    public static func place(_ target: DomainTarget, in inventory: Inventory, now: ContinuousClock.Instant) -> Placement {
        var placement = Placement()
        var lastRun: (host: String, at: ContinuousClock.Instant)?
        for host in inventory.hosts.values.sorted(by: { $0.id < $1.id }) {
            let liveness = host.liveness(now: now, freshness: inventory.freshness)
            if case .stale = liveness { placement.staleHosts.append(host.id) }
            guard let domain = host.domains.values.first(where: target.matches) else { continue }
            placement.uuids.insert(domain.uuid)
            switch liveness {
            case .live:
                if domain.state.isOff { placement.definedOff.append(host.id) } else { placement.running.append(host.id) }
                if let at = host.lastRunning[domain.uuid], lastRun.map({ at > $0.at }) ?? true { lastRun = (host.id, at) }
            case .stale:
                placement.onStaleHosts.append(host.id)
            case .confirmedDown:
                placement.onDownHosts.append(host.id)
            }
        }
        placement.lastRanOn = lastRun?.host
        placement.expectedHosts = inventory.hosts.count
        return placement
    }

    /// - Parameter trusted: false while the router cannot yet vouch for the absence of a domain
    ///   (just started, or no host known): "unknown" is then a failure, never "off".
    public static func decide(_ action: FenceAction, _ target: DomainTarget, placement: Placement, trusted: Bool) -> RoutingDecision {
        func fail(_ code: FenceFailure.Code, _ message: String) -> RoutingDecision {
            .answer(.failed(FenceFailure(code, message)))
        }
        if placement.uuids.count > 1 {
            return fail(.operationFailed, "\(target) names \(placement.uuids.count) different domains; use its UUID")
        }
        let holders = placement.liveHolders
        let stale = placement.onStaleHosts
        let unknownEverywhere = holders.isEmpty && stale.isEmpty && placement.onDownHosts.isEmpty
        if unknownEverywhere {
            // Absence counts only when every expected host is live and the router has been listening long enough.
            guard trusted, placement.expectedHosts > 0, placement.staleHosts.isEmpty else {
                let why = !placement.staleHosts.isEmpty ? "host(s) \(placement.staleHosts.joined(separator: ", ")) are not live"
                    : placement.expectedHosts == 0 ? "the router knows no host" : "the router cannot vouch for its absence yet"
                return fail(.hypervisorUnavailable, "\(target) is on no live host and \(why)")
            }
            return action == .status ? .answer(.off) : fail(.notFound, "no host has \(target)")
        }
        let onStale = "\(target) was last seen on \(stale.joined(separator: ", ")), whose state is unknown now"
        switch action {
        case .status:
            if !placement.running.isEmpty {
                // Running on two hosts (a live migration): on, no need to ask.
                return placement.running.count > 1 ? .answer(.success) : .command(.status, hosts: placement.running)
            }
            if !stale.isEmpty { return fail(.hypervisorUnavailable, onStale) }
            // Off where it is defined: let those agents confirm it; on confirmed-down hosts it counts as off.
            return holders.isEmpty ? .answer(.off) : .command(.status, hosts: holders)
        case .off:
            if !stale.isEmpty { return fail(.hypervisorUnavailable, onStale) }
            return holders.isEmpty ? .answer(.success) : .command(.off, hosts: holders)
        case .reboot:
            if !stale.isEmpty { return fail(.hypervisorUnavailable, onStale) }
            if holders.isEmpty { return .answer(.success) }
            // Back on at the host it ran on (of two, the one it last ran on); a domain that was off stays off.
            let restartOn = placement.running.isEmpty ? nil : (placement.running.count == 1 ? placement.running[0] : placement.lastRanOn ?? placement.running[0])
            return .reboot(offOn: holders, restartOn: restartOn)
        case .on:
            if !placement.running.isEmpty { return .command(.on, hosts: [placement.running[0]]) }
            // Starting it while a silent host may run it could make two copies run.
            if !stale.isEmpty { return fail(.hypervisorUnavailable, onStale) }
            guard !placement.definedOff.isEmpty else {
                return fail(.notFound, "\(target) is defined on no live host")
            }
            let host = placement.lastRanOn.flatMap { placement.definedOff.contains($0) ? $0 : nil } ?? placement.definedOff[0]
            return .command(.on, hosts: [host])
        }
    }
}
