import Logging

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
public struct HypervisorFencer: FenceBackend {
    public let hypervisors: [any Hypervisor]
    /// The longest a reboot waits for the domain to be off, as the reference's 15 polls.
    public let offWaitLimit: Duration
    private let serializer = KeyedSerializer<String>()
    private let logger: Logger

    public init(hypervisors: [any Hypervisor], offWaitLimit: Duration = .seconds(15), logger: Logger) {
        self.hypervisors = hypervisors
        self.offWaitLimit = offWaitLimit
        self.logger = logger
    }

    public func perform(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> FenceOutcome {
        do throws(FenceFailure) {
            guard let (hypervisor, domain) = try await locate(target, deadline: deadline) else {
                return action == .status ? .off : .failed(FenceFailure(.notFound, "no domain \(target) on \(hypervisorNames)"))
            }
            let outcome = try await serializer.withExclusiveAccess(to: domain.uuid, until: deadline) { () async throws(FenceFailure) -> FenceOutcome in
                try checkDeadline(deadline)
                return try await act(action, uuid: domain.uuid, on: hypervisor, deadline: deadline)
            }
            return outcome ?? .failed(FenceFailure(.deadlineExceeded, "waited past the deadline behind another request for \(domain.name)"))
        } catch {
            return .failed(error)
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
    private func locate(_ target: DomainTarget, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> (any Hypervisor, DomainInfo)? {
        for hypervisor in hypervisors {
            if let domain = try await hypervisor.lookup(target, deadline: deadline) {
                return (hypervisor, domain)
            }
        }
        return nil
    }

    /// Runs under the domain's lock, from a fresh reading of its state.
    private func act(_ action: FenceAction, uuid: String, on hypervisor: any Hypervisor, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> FenceOutcome {
        guard let domain = try await hypervisor.lookup(.uuid(uuid), deadline: deadline) else {
            return action == .status ? .off : .failed(FenceFailure(.notFound, "domain \(uuid) vanished before it could be acted on"))
        }
        switch action {
        case .status:
            return domain.state.isOff ? .off : .success
        case .off:
            guard !domain.state.isOff else { return .success }
            try await forceOff(domain, on: hypervisor, deadline: deadline)
            return .success
        case .on:
            guard domain.state.isOff else { return .success }
            try await hypervisor.start(uuid: uuid, deadline: deadline)
            guard let after = try await hypervisor.lookup(.uuid(uuid), deadline: deadline), !after.state.isOff else {
                throw FenceFailure(.operationFailed, "\(domain.name) is still off after starting it")
            }
            return .success
        case .reboot:
            guard !domain.state.isOff else { return .success }
            let definition = domain.persistent ? nil : try await hypervisor.definition(uuid: uuid, deadline: deadline)
            try await forceOff(domain, on: hypervisor, deadline: deadline)
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
            return .success
        }
    }

    /// Destroys the domain and polls until the hypervisor reports it off (or gone, for a transient one).
    private func forceOff(_ domain: DomainInfo, on hypervisor: any Hypervisor, deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        try await hypervisor.destroy(uuid: domain.uuid, deadline: deadline)
        let limit = min(deadline, .now + offWaitLimit)
        var pause = Duration.milliseconds(2)
        while true {
            guard let now = try await hypervisor.lookup(.uuid(domain.uuid), deadline: deadline), !now.state.isOff else { return }
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
