import FenceBus
import FenceCore
import Testing
@testable import Routing

private let vm = DomainInfo(name: "vm1", uuid: "11111111-0000-4000-8000-000000000001", state: .running, persistent: true)
private func off(_ domain: DomainInfo) -> DomainInfo { DomainInfo(name: domain.name, uuid: domain.uuid, state: .shutOff, persistent: domain.persistent) }

/// An inventory built from messages, as the router builds it.
private struct World {
    var inventory = Inventory(freshness: .seconds(3))
    let start = ContinuousClock.now
    var epochs: [String: UInt64] = [:]
    var sequences: [String: UInt64] = [:]

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int64(seconds * 1000)) }

    mutating func next(_ host: String) -> (UInt64, UInt64) {
        sequences[host, default: 0] += 1
        return (epochs[host, default: 100], sequences[host]!)
    }

    mutating func snapshot(_ host: String, _ domains: [DomainInfo], at time: Double = 0, libvirt: Bool = true) {
        let (epoch, sequence) = next(host)
        inventory.apply(.snapshot(InventorySnapshot(host: host, epoch: epoch, sequence: sequence, libvirtConnected: libvirt, domains: domains)), now: at(time))
    }

    mutating func heartbeat(_ host: String, at time: Double, libvirt: Bool = true) {
        let (epoch, sequence) = next(host)
        inventory.apply(.heartbeat(Heartbeat(host: host, epoch: epoch, sequence: sequence, libvirtConnected: libvirt, domainCount: 0)), now: at(time))
    }

    mutating func delta(_ host: String, _ change: InventoryDelta.Change, at time: Double) {
        let (epoch, sequence) = next(host)
        inventory.apply(.delta(InventoryDelta(host: host, epoch: epoch, sequence: sequence, change: change, event: "test", eventTime: 0)), now: at(time))
    }

    func decide(_ action: FenceAction, _ target: String = "vm1", at time: Double = 1, trusted: Bool = true) -> RoutingDecision {
        RoutingRules.decide(action, DomainTarget(target), placement: RoutingRules.place(DomainTarget(target), in: inventory, now: at(time)), trusted: trusted)
    }
}

private func isFailure(_ decision: RoutingDecision) -> Bool {
    if case .answer(.failed) = decision { true } else { false }
}

@Suite("Router inventory")
struct InventoryTests {
    @Test("late, reordered and old-run messages never bring back an old state")
    func ordering() {
        var world = World()
        world.snapshot("h1", [vm])
        world.delta("h1", .updated(off(vm)), at: 0.1)
        // A delayed message of the same run, with a smaller sequence number, is ignored.
        let stale = InventorySnapshot(host: "h1", epoch: 100, sequence: 1, libvirtConnected: true, domains: [vm])
        let ignoredStale = world.inventory.apply(.snapshot(stale), now: world.at(0.2))
        #expect(ignoredStale == .outOfOrder)
        #expect(world.inventory.hosts["h1"]?.domains[vm.uuid]?.state == .shutOff)
        // A new run replaces everything, and is not trusted until its first snapshot.
        world.epochs["h1"] = 200
        world.sequences["h1"] = 0
        world.heartbeat("h1", at: 0.3)
        #expect(world.inventory.hosts["h1"]?.domains.isEmpty == true)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(0.4), freshness: .seconds(3)) == .stale(reason: "no snapshot yet from this agent run"))
        world.snapshot("h1", [vm], at: 0.5)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(0.6), freshness: .seconds(3)) == .live)
        // A message of the previous run arriving late is ignored.
        let previous = Heartbeat(host: "h1", epoch: 100, sequence: 99, libvirtConnected: true, domainCount: 0)
        let ignoredOld = world.inventory.apply(.heartbeat(previous), now: world.at(0.7))
        #expect(ignoredOld == .olderRun)
    }

    @Test("a lost message makes the host's list doubtful until the next snapshot")
    func missedMessage() {
        var world = World()
        world.snapshot("h1", [vm])
        world.heartbeat("h1", at: 0.5)
        _ = world.next("h1")  // a delta the router never received
        world.heartbeat("h1", at: 1)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(1.1), freshness: .seconds(3)) == .stale(reason: "messages 3…3 missed; waiting for a snapshot"))
        #expect(isFailure(world.decide(.off, at: 1.1)))
        #expect(isFailure(world.decide(.status, "ghost", at: 1.1)))
        world.snapshot("h1", [off(vm)], at: 2)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(2.1), freshness: .seconds(3)) == .live)
        #expect(world.decide(.status, at: 2.1) == .command(.status, hosts: ["h1"]))
    }

    @Test("liveness: silence, lost libvirt and operator confirmation")
    func liveness() {
        var world = World()
        world.snapshot("h1", [vm])
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(2.9), freshness: .seconds(3)) == .live)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(3.1), freshness: .seconds(3)) != .live)
        world.heartbeat("h1", at: 3.2, libvirt: false)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(3.3), freshness: .seconds(3)) == .stale(reason: "its agent cannot reach libvirt"))
        world.inventory.confirmDown("h1")
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(9), freshness: .seconds(3)) == .confirmedDown)
        world.heartbeat("h1", at: 10)
        #expect(world.inventory.hosts["h1"]?.confirmedDown == false, "a host that speaks is not down")
    }

    @Test("configured hosts are expected from the start and cannot be forgotten; learned ones can")
    func expectedHosts() {
        var inventory = Inventory(configuredHosts: ["h1"])
        #expect(inventory.expectedHosts == ["h1"])
        inventory.apply(.heartbeat(Heartbeat(host: "h2", epoch: 1, sequence: 1, libvirtConnected: true, domainCount: 0)), now: .now)
        #expect(inventory.expectedHosts == ["h1", "h2"])
        let forgotConfigured = inventory.forget("h1")
        let forgotLearned = inventory.forget("h2")
        #expect(!forgotConfigured)
        #expect(forgotLearned)
        #expect(inventory.expectedHosts == ["h1"])
    }
}

@Suite("Routing rules")
struct RoutingRuleTests {
    @Test("running on exactly one live host: the action goes there")
    func oneHost() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        #expect(world.decide(.off) == .command(.off, hosts: ["h1"]))
        #expect(world.decide(.status) == .command(.status, hosts: ["h1"]))
        #expect(world.decide(.reboot) == .reboot(offOn: ["h1"], restartOn: "h1"))
        #expect(world.decide(.on) == .command(.on, hosts: ["h1"]))
        #expect(world.decide(.status, vm.uuid) == .command(.status, hosts: ["h1"]))
    }

    @Test("running on two hosts (live migration): off destroys both; status answers on")
    func migration() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [vm], at: 0.5)
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2"]))
        #expect(world.decide(.status) == .answer(.success))
        #expect(world.decide(.reboot) == .reboot(offOn: ["h1", "h2"], restartOn: "h2"), "back on where it last ran")
    }

    @Test("defined only as shut off on live hosts: off succeeds there, status answers off (both confirmed by those agents)")
    func definedOff() {
        var world = World()
        world.snapshot("h1", [off(vm)])
        world.snapshot("h2", [])
        #expect(world.decide(.off) == .command(.off, hosts: ["h1"]))
        #expect(world.decide(.status) == .command(.status, hosts: ["h1"]))
        #expect(world.decide(.reboot) == .reboot(offOn: ["h1"], restartOn: nil), "a domain that was off stays off")
        #expect(world.decide(.on) == .command(.on, hosts: ["h1"]))
    }

    @Test("last seen on a stale host: failure for off, reboot, status and on — never off")
    func staleHost() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        world.heartbeat("h2", at: 4)
        for action in FenceAction.allCases {
            #expect(isFailure(world.decide(action, at: 5)), "\(action)")
        }
        // Running on a live host too: status is on there; off still cannot be confirmed everywhere.
        world.snapshot("h2", [vm], at: 4.5)
        #expect(world.decide(.status, at: 5) == .command(.status, hosts: ["h2"]))
        #expect(isFailure(world.decide(.off, at: 5)))
    }

    @Test("a host confirmed down by the operator: its domains count as off")
    func confirmedDown() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        world.heartbeat("h2", at: 4)
        world.inventory.confirmDown("h1")
        #expect(world.decide(.status, at: 5) == .answer(.off))
        #expect(world.decide(.off, at: 5) == .answer(.success))
        #expect(world.decide(.reboot, at: 5) == .answer(.success))
        #expect(isFailure(world.decide(.on, at: 5)), "nothing live to start it on")
    }

    @Test("unknown everywhere while every expected host is live: off fails, status answers off")
    func unknownAllLive() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        #expect(world.decide(.status, "ghost") == .answer(.off))
        guard case .answer(.failed(let failure)) = world.decide(.off, "ghost") else {
            Issue.record("off of an unknown domain did not fail")
            return
        }
        #expect(failure.code == .notFound)
        #expect(isFailure(world.decide(.on, "ghost")))
    }

    @Test("unknown everywhere while an expected host is stale, or before the router can vouch: failure")
    func unknownNotAllLive() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        world.heartbeat("h1", at: 4)
        #expect(isFailure(world.decide(.status, "ghost", at: 5)))
        #expect(isFailure(world.decide(.off, "ghost", at: 5)))
        #expect(isFailure(world.decide(.status, "ghost", trusted: false)))
        #expect(isFailure(World().decide(.status, "ghost")), "a router that knows no host vouches for nothing")
    }

    @Test("on starts the domain where it is defined; of several, where it last ran")
    func onWhereDefined() {
        var world = World()
        world.snapshot("h1", [off(vm)])
        world.snapshot("h2", [vm], at: 0.2)
        world.delta("h2", .updated(off(vm)), at: 0.4)
        #expect(world.decide(.on) == .command(.on, hosts: ["h2"]))
    }

    @Test("a name used by two different domains is refused; their UUIDs are not")
    func ambiguousName() {
        var world = World()
        let other = DomainInfo(name: "vm1", uuid: "22222222-0000-4000-8000-000000000002", state: .running, persistent: true)
        world.snapshot("h1", [vm])
        world.snapshot("h2", [other])
        #expect(isFailure(world.decide(.off)))
        #expect(world.decide(.off, other.uuid) == .command(.off, hosts: ["h2"]))
    }
}
