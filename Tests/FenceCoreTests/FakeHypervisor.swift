import Synchronization
import FenceCore

/// An in-memory stand-in for a hypervisor, for unit tests of the fencing rules only. The real
/// libvirt test driver is exercised in LibvirtTests and the end-to-end tests.
final class FakeHypervisor: Hypervisor {
    struct Behaviour: Sendable {
        /// Every call fails as if the hypervisor were unreachable.
        var unreachable = false
        /// `destroy` returns success but the domain keeps running.
        var destroyIsIgnored = false
        /// `start` fails.
        var startFails = false
        /// How long `destroy` takes.
        var destroyDuration: Duration = .zero
        /// Holds every `destroy` until opened.
        var destroyGate: Gate?
    }

    /// Where a call waits until the test opens it: the test knows the call is under way (and the
    /// domain's lock held) without guessing how long that takes.
    final class Gate: Sendable {
        private let arrived = Atomic(0)
        private let opened = Atomic(false)

        /// How many calls reached the gate so far.
        var arrivals: Int { arrived.load(ordering: .sequentiallyConsistent) }

        func open() { opened.store(true, ordering: .sequentiallyConsistent) }

        func pass() async {
            arrived.add(1, ordering: .sequentiallyConsistent)
            while !opened.load(ordering: .sequentiallyConsistent) {
                guard (try? await Task.sleep(for: .milliseconds(5))) != nil else { return }
            }
        }
    }

    struct Record: Sendable {
        var domains: [DomainInfo]
        var behaviour = Behaviour()
        var calls: [String] = []
        var destroysInFlight: [String: Int] = [:]
        var maximumConcurrentDestroys: [String: Int] = [:]
        var maximumOverall = 0
        var inFlightOverall = 0
    }

    let name: String
    let record: Mutex<Record>

    init(name: String = "fake", domains: [DomainInfo], behaviour: Behaviour = Behaviour()) {
        self.name = name
        self.record = Mutex(Record(domains: domains, behaviour: behaviour))
    }

    var calls: [String] { record.withLock { $0.calls } }
    func state(of name: String) -> DomainState? { record.withLock { $0.domains.first { $0.name == name }?.state } }

    private func enter(_ call: String) throws(FenceFailure) -> Behaviour {
        let behaviour = record.withLock { record in
            record.calls.append(call)
            return record.behaviour
        }
        if behaviour.unreachable { throw FenceFailure(.hypervisorUnavailable, "fake hypervisor unreachable") }
        return behaviour
    }

    /// As libvirt's lookup: without whether the domain is persistent.
    func lookup(_ target: DomainTarget, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainInfo? {
        _ = try enter("lookup \(target)")
        return record.withLock { $0.domains.first(where: target.matches) }.map { DomainInfo(name: $0.name, uuid: $0.uuid, state: $0.state, persistent: nil) }
    }

    func isPersistent(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> Bool {
        _ = try enter("isPersistent \(uuid)")
        guard let domain = record.withLock({ $0.domains.first { $0.uuid == uuid } }) else { throw FenceFailure(.notFound, uuid) }
        return domain.persistent == true
    }

    func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo] {
        _ = try enter("list")
        return record.withLock { $0.domains }
    }

    func destroy(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> DomainState? {
        let behaviour = try enter("destroy \(uuid)")
        record.withLock { record in
            record.destroysInFlight[uuid, default: 0] += 1
            record.maximumConcurrentDestroys[uuid] = max(record.maximumConcurrentDestroys[uuid] ?? 0, record.destroysInFlight[uuid]!)
            record.inFlightOverall += 1
            record.maximumOverall = max(record.maximumOverall, record.inFlightOverall)
        }
        if behaviour.destroyDuration > .zero { try? await Task.sleep(for: behaviour.destroyDuration) }
        await behaviour.destroyGate?.pass()
        return record.withLock { record in
            record.destroysInFlight[uuid]! -= 1
            record.inFlightOverall -= 1
            guard let index = record.domains.firstIndex(where: { $0.uuid == uuid }) else { return nil }
            guard !behaviour.destroyIsIgnored else { return record.domains[index].state }
            if record.domains[index].persistent == true {
                record.domains[index].state = .shutOff
                return .shutOff
            } else {
                record.domains.remove(at: index)
                return nil
            }
        }
    }

    func start(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        let behaviour = try enter("start \(uuid)")
        if behaviour.startFails { throw FenceFailure(.operationFailed, "fake start failure") }
        record.withLock { record in
            if let index = record.domains.firstIndex(where: { $0.uuid == uuid }) { record.domains[index].state = .running }
        }
    }

    func definition(uuid: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) -> String {
        _ = try enter("definition \(uuid)")
        guard let domain = record.withLock({ $0.domains.first { $0.uuid == uuid } }) else {
            throw FenceFailure(.notFound, uuid)
        }
        return "\(domain.name)|\(domain.uuid)"
    }

    func startTransient(xml: String, deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        let behaviour = try enter("startTransient")
        if behaviour.startFails { throw FenceFailure(.operationFailed, "fake start failure") }
        let parts = xml.split(separator: "|").map(String.init)
        record.withLock { $0.domains.append(DomainInfo(name: parts[0], uuid: parts[1], state: .running, persistent: false)) }
    }

    func ping(deadline: ContinuousClock.Instant) async throws(FenceFailure) {
        _ = try enter("ping")
    }
}
