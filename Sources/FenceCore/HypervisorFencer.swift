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
public final class HypervisorFencer: FenceBackend {
    public let hypervisors: [any Hypervisor]
    /// The longest a reboot waits for the domain to be off, as the reference's 15 polls.
    public let offWaitLimit: Duration
    private let serializer = KeyedSerializer<String>()
    /// Where each target was last found: the hypervisor and the domain's UUID. Lets a request lock
    /// its domain at once and read it only once, under the lock.
    private let located = Mutex<[DomainTarget: (hypervisor: Int, uuid: String)]>([:])
    private let logger: Logger

    public init(hypervisors: [any Hypervisor], offWaitLimit: Duration = .seconds(15), logger: Logger) {
        self.hypervisors = hypervisors
        self.offWaitLimit = offWaitLimit
        self.logger = logger
    }

    public func perform(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> FenceOutcome {
        await performObserving(action, on: target, deadline: deadline).outcome
    }

    /// Also returns the domain as last read under its lock, after acting (nil: not found, or gone),
    /// so that a host agent can report what it saw without reading it again.
    public func performObserving(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> (outcome: FenceOutcome, observed: DomainInfo?) {
        do throws(FenceFailure) {
            // Where the target was found before: lock that UUID, read the target once under the
            // lock, and act only if it is still that domain.
            if let known = located.withLock({ $0[target] }) {
                let hypervisor = hypervisors[known.hypervisor]
                let result = try await serializer.withExclusiveAccess(to: known.uuid, until: deadline) { () async throws(FenceFailure) -> (FenceOutcome, DomainInfo?)? in
                    try checkDeadline(deadline)
                    guard let domain = try await hypervisor.lookup(target, deadline: deadline), domain.uuid == known.uuid else { return nil }
                    return try await act(action, on: domain, in: hypervisor, deadline: deadline)
                }
                switch result {
                case .some(.some(let result)): return result
                case .none: return (.failed(waitedTooLong(target)), nil)
                case .some(.none): _ = located.withLock { $0.removeValue(forKey: target) }
                }
            }
            // The long way: find it, lock its UUID, read it again under the lock.
            guard let (index, domain) = try await locate(target, deadline: deadline) else {
                return (action == .status ? .off : .failed(FenceFailure(.notFound, "no domain \(target) on \(hypervisorNames)")), nil)
            }
            remember(target, hypervisor: index, uuid: domain.uuid)
            let hypervisor = hypervisors[index]
            let result = try await serializer.withExclusiveAccess(to: domain.uuid, until: deadline) { () async throws(FenceFailure) -> (FenceOutcome, DomainInfo?) in
                try checkDeadline(deadline)
                guard let current = try await hypervisor.lookup(.uuid(domain.uuid), deadline: deadline) else {
                    return (action == .status ? .off : .failed(FenceFailure(.notFound, "domain \(target) vanished before it could be acted on")), nil)
                }
                return try await act(action, on: current, in: hypervisor, deadline: deadline)
            }
            return result ?? (.failed(waitedTooLong(target)), nil)
        } catch {
            return (.failed(error), nil)
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

    /// The first connection that knows the domain, as the reference does with several URIs.
    private func locate(_ target: DomainTarget, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> (Int, DomainInfo)? {
        for (index, hypervisor) in hypervisors.enumerated() {
            if let domain = try await hypervisor.lookup(target, deadline: deadline) {
                return (index, domain)
            }
        }
        return nil
    }

    private func remember(_ target: DomainTarget, hypervisor: Int, uuid: String) {
        located.withLock { located in
            // A bound, not a policy: a host with more targets than this just takes the long way more often.
            if located.count >= 16_384 { located.removeAll() }
            located[target] = (hypervisor, uuid)
        }
    }

    private func waitedTooLong(_ target: DomainTarget) -> FenceFailure {
        FenceFailure(.deadlineExceeded, "waited past the deadline behind another request for \(target)")
    }

    /// Runs under the domain's lock, from `domain` as read under that lock; returns the outcome and
    /// the last reading of the domain.
    private func act(_ action: FenceAction, on domain: DomainInfo, in hypervisor: any Hypervisor, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> (FenceOutcome, DomainInfo?) {
        let uuid = domain.uuid
        switch action {
        case .status:
            return (domain.state.isOff ? .off : .success, domain)
        case .off:
            guard !domain.state.isOff else { return (.success, domain) }
            return (.success, try await forceOff(domain, on: hypervisor, deadline: deadline))
        case .on:
            guard domain.state.isOff else { return (.success, domain) }
            try await hypervisor.start(uuid: uuid, deadline: deadline)
            guard let after = try await hypervisor.lookup(.uuid(uuid), deadline: deadline), !after.state.isOff else {
                throw FenceFailure(.operationFailed, "\(domain.name) is still off after starting it")
            }
            return (.success, after)
        case .reboot:
            guard !domain.state.isOff else { return (.success, domain) }
            let definition = domain.persistent ? nil : try await hypervisor.definition(uuid: uuid, deadline: deadline)
            _ = try await forceOff(domain, on: hypervisor, deadline: deadline)
            do throws(FenceFailure) {
                if let definition {
                    try await hypervisor.startTransient(xml: definition, deadline: deadline)
                } else {
                    try await hypervisor.start(uuid: uuid, deadline: deadline)
                }
            } catch {
                logger.warning("reboot: the domain was fenced but did not start again", metadata: [
                    "domain": "\(domain.name)", "error": "\(error)",
                ])
            }
            return (.success, try? await hypervisor.lookup(.uuid(uuid), deadline: deadline))
        }
    }

    /// Destroys the domain and polls until the hypervisor reports it off (or gone, for a transient
    /// one: nil); returns that last reading.
    private func forceOff(_ domain: DomainInfo, on hypervisor: any Hypervisor, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainInfo? {
        try await hypervisor.destroy(uuid: domain.uuid, deadline: deadline)
        let limit = min(deadline, .now + offWaitLimit)
        var pause = Duration.milliseconds(2)
        while true {
            let now = try await hypervisor.lookup(.uuid(domain.uuid), deadline: deadline)
            guard let now, !now.state.isOff else { return now }
            guard ContinuousClock.now + pause < limit else {
                throw FenceFailure(.stillRunning, "\(domain.name) is still \(now.state) after destroy")
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    private func checkDeadline(_ deadline: ContinuousClock.Instant) throws(FenceFailure) {
        guard ContinuousClock.now < deadline else {
            throw FenceFailure(.deadlineExceeded, "the request's deadline passed before it could run")
        }
    }
}
