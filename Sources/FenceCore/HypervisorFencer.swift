import Logging
import Synchronization

/// The single-host fencing rules of the reference's libvirt backend, over one or more hypervisor
/// connections, with its fixes: every action is confirmed by reading the state after acting,
/// reboot polls for "off" instead of sleeping a fixed second, and requests are serialised per
/// domain with the request's deadline honoured throughout.
///
/// | action | unknown domain | shut off | otherwise |
/// |---|---|---|---|
/// | status | off (2) | off (2) | on (0) — paused and crashed count as on |
/// | off | failure (1) | success, nothing done | destroy, confirm off |
/// | on | failure (1) | start, confirm running | success, nothing done |
/// | reboot | failure (1) | success, stays off | destroy, confirm off, start again (a failed restart is still success: the domain was fenced) |
///
/// With several connections (`uri`, `uri1`, …) the domain is looked up on every one of them,
/// not only on the first that knows it as the reference does: it is on while it runs on any,
/// off only when every connection that has it says so; `off` destroys it wherever it runs and
/// succeeds only when all of those confirm; `on` starts it on the first that has it, unless it
/// runs somewhere already; `reboot` restarts it only where it ran, if that was one place.
public final class HypervisorFencer: FenceBackend {
    public let hypervisors: [any Hypervisor]
    /// The longest a reboot waits for the domain to be off, as the reference's 15 polls.
    public let offWaitLimit: Duration
    private let serializer = KeyedSerializer<String>()
    /// The UUIDs each target was last found with. Lets a request lock its domain at once and
    /// read it only once, under the lock.
    private let located = Mutex<[DomainTarget: [String]]>([:])
    private let logger: Logger

    public init(hypervisors: [any Hypervisor], offWaitLimit: Duration = .seconds(15), logger: Logger) {
        self.hypervisors = hypervisors
        self.offWaitLimit = offWaitLimit
        self.logger = logger
    }

    public func perform(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> FenceOutcome {
        await performObserving(action, on: target, deadline: deadline).outcome
    }

    /// A domain as one connection reported it.
    private struct Found: Sendable {
        let hypervisor: Int
        let domain: DomainInfo
    }

    private enum Attempt: Sendable {
        case done(FenceOutcome, DomainInfo?, DomainInfo?, [String])
        /// The domain is held under other UUIDs than those locked: lock those and read again.
        case moved([String])
    }

    /// Also returns the domain as read under its lock before acting (running wherever it ran;
    /// nil: not found) and as last read after acting (nil: not found, or gone), so that a host
    /// agent can report what it found and what it left without reading it again.
    public func performObserving(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> (outcome: FenceOutcome, before: DomainInfo?, observed: DomainInfo?) {
        do throws(FenceFailure) {
            // Lock the UUIDs the target was found with (before, or now), read it under the locks,
            // and act only if it is still those domains.
            var uuids = located.withLock { $0[target] }
            for _ in 0..<3 {
                let locking: [String]
                if let uuids {
                    locking = uuids
                } else {
                    locking = Self.uuids(of: try await locate(target, deadline: deadline))
                }
                let attempt = try await withLocks(locking[...], until: deadline) { () async throws(FenceFailure) -> Attempt in
                    try checkDeadline(deadline)
                    let found = try await locate(target, deadline: deadline)
                    let now = Self.uuids(of: found)
                    guard Set(now).isSubset(of: locking) else { return .moved(now) }
                    let before = (found.first { !$0.domain.state.isOff } ?? found.first)?.domain
                    let (outcome, observed) = try await act(action, on: found, deadline: deadline)
                    return .done(outcome, before, observed, now)
                }
                switch attempt {
                case nil:
                    return (.failed(waitedTooLong(target)), nil, nil)
                case .done(let outcome, let before, let observed, let found)?:
                    remember(target, uuids: found)
                    return (outcome, before, observed)
                case .moved(let now)?:
                    uuids = now
                }
            }
            return (.failed(FenceFailure(.operationFailed, "\(target) kept changing while it was being locked")), nil, nil)
        } catch {
            return (.failed(error), nil, nil)
        }
    }

    public func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo] {
        var domains: [DomainInfo] = []
        for hypervisor in hypervisors {
            domains += try await hypervisor.listDomains(deadline: deadline)
        }
        return domains
    }

    public func checkHealth(deadline: ContinuousClock.Instant) async -> FenceOutcome {
        do throws(FenceFailure) {
            for hypervisor in hypervisors {
                try await hypervisor.ping(deadline: deadline)
            }
            return .success
        } catch {
            return .failed(error)
        }
    }

    private var hypervisorNames: String { hypervisors.map(\.name).joined(separator: ", ") }

    /// The domain on every connection that has it; a connection that cannot answer fails the
    /// lookup (doubt is never "not there").
    private func locate(_ target: DomainTarget, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [Found] {
        var found: [Found] = []
        for (index, hypervisor) in hypervisors.enumerated() {
            if let domain = try await hypervisor.lookup(target, deadline: deadline) {
                found.append(Found(hypervisor: index, domain: domain))
            }
        }
        return found
    }

    private static func uuids(of found: [Found]) -> [String] {
        // One connection is the common case: no set to build and sort.
        found.count == 1 ? [found[0].domain.uuid] : Array(Set(found.map(\.domain.uuid))).sorted()
    }

    /// Runs `body` holding the lock of every key, taken in order (so two requests never wait for
    /// each other); nil if the deadline came first.
    private func withLocks<T: Sendable>(
        _ keys: ArraySlice<String>, until deadline: ContinuousClock.Instant, _ body: () async throws(FenceFailure) -> T
    ) async throws(FenceFailure) -> T? {
        guard let first = keys.first else { return try await body() }
        let result = try await serializer.withExclusiveAccess(to: first, until: deadline) { () async throws(FenceFailure) -> T? in
            try await withLocks(keys.dropFirst(), until: deadline, body)
        }
        return result ?? nil
    }

    private func remember(_ target: DomainTarget, uuids: [String]) {
        located.withLock { located in
            guard !uuids.isEmpty else {
                located[target] = nil
                return
            }
            // A bound, not a policy: a host with more targets than this just takes the long way more often.
            if located.count >= 16_384 { located.removeAll() }
            located[target] = uuids
        }
    }

    private func waitedTooLong(_ target: DomainTarget) -> FenceFailure {
        FenceFailure(.deadlineExceeded, "waited past the deadline behind another request for \(target)")
    }

    /// Runs under the domain's locks, from `found` as read under them; returns the outcome and
    /// the last reading of the domain.
    private func act(_ action: FenceAction, on found: [Found], deadline: ContinuousClock.Instant) async throws(FenceFailure) -> (FenceOutcome, DomainInfo?) {
        guard let first = found.first else {
            return (action == .status ? .off : .failed(FenceFailure(.notFound, "no such domain on \(hypervisorNames)")), nil)
        }
        let running = found.filter { !$0.domain.state.isOff }
        switch action {
        case .status:
            return running.first.map { (.success, $0.domain) } ?? (.off, first.domain)
        case .off:
            var last: DomainInfo? = first.domain
            for place in running {
                last = try await forceOff(place.domain, on: hypervisors[place.hypervisor], deadline: deadline)
            }
            return (.success, last)
        case .on:
            if let place = running.first { return (.success, place.domain) }
            let hypervisor = hypervisors[first.hypervisor]
            try await hypervisor.start(uuid: first.domain.uuid, deadline: deadline)
            guard let after = try await hypervisor.lookup(.uuid(first.domain.uuid), deadline: deadline), !after.state.isOff else {
                throw FenceFailure(.operationFailed, "\(first.domain.name) is still off after starting it")
            }
            return (.success, after)
        case .reboot:
            guard let place = running.first else { return (.success, first.domain) }
            let hypervisor = hypervisors[place.hypervisor]
            let persistent = try await hypervisor.isPersistent(uuid: place.domain.uuid, deadline: deadline)
            let definition = persistent ? nil : try await hypervisor.definition(uuid: place.domain.uuid, deadline: deadline)
            for other in running {
                _ = try await forceOff(other.domain, on: hypervisors[other.hypervisor], deadline: deadline)
            }
            guard running.count == 1 else {
                logger.warning("reboot: the domain ran on several connections; it was fenced on all and is started on none", metadata: [
                    "domain": "\(place.domain.name)", "connections": "\(running.map { hypervisors[$0.hypervisor].name })",
                ])
                return (.success, nil)
            }
            do throws(FenceFailure) {
                if let definition {
                    try await hypervisor.startTransient(xml: definition, deadline: deadline)
                } else {
                    try await hypervisor.start(uuid: place.domain.uuid, deadline: deadline)
                }
            } catch {
                logger.warning("reboot: the domain was fenced but did not start again", metadata: [
                    "domain": "\(place.domain.name)", "error": "\(error)",
                ])
            }
            return (.success, try? await hypervisor.lookup(.uuid(place.domain.uuid), deadline: deadline))
        }
    }

    /// Destroys the domain and polls until the hypervisor reports it off (or gone, for a transient
    /// one: nil); returns that last reading. The first reading comes with the destroy.
    private func forceOff(_ domain: DomainInfo, on hypervisor: any Hypervisor, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainInfo? {
        let after = try await hypervisor.destroy(uuid: domain.uuid, deadline: deadline)
        var now = after.map { DomainInfo(name: domain.name, uuid: domain.uuid, state: $0, persistent: domain.persistent) }
        let limit = min(deadline, .now + offWaitLimit)
        var pause = Duration.milliseconds(2)
        while true {
            guard let reading = now, !reading.state.isOff else { return now }
            guard ContinuousClock.now + pause < limit else {
                throw FenceFailure(.stillRunning, "\(domain.name) is still \(reading.state) after destroy")
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
            now = try await hypervisor.lookup(.uuid(domain.uuid), deadline: deadline)
        }
    }

    private func checkDeadline(_ deadline: ContinuousClock.Instant) throws(FenceFailure) {
        guard ContinuousClock.now < deadline else {
            throw FenceFailure(.deadlineExceeded, "the request's deadline passed before it could run")
        }
    }
}
