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
    /// The wall clock at `seconds`, in ms (every host's clock agrees here).
    func wall(_ seconds: Double) -> UInt64 { 1_800_000_000_000 + UInt64(seconds * 1000) }

    /// Applies `message`, sent `age` seconds before it arrives at `time`.
    @discardableResult
    mutating func receive(_ message: BusMessage, at time: Double, age: Double = 0) -> Inventory.Ignored? {
        inventory.apply(message, sentAt: wall(time - age), receivedAt: wall(time), now: at(time)).ignored
    }

    mutating func next(_ host: String) -> (UInt64, UInt64) {
        sequences[host, default: 0] += 1
        return (epochs[host, default: 100], sequences[host]!)
    }

    mutating func snapshot(_ host: String, _ domains: [DomainInfo], at time: Double = 0, libvirt: Bool = true) {
        let (epoch, sequence) = next(host)
        receive(.snapshot(InventorySnapshot(host: host, epoch: epoch, sequence: sequence, libvirtConnected: libvirt, domains: domains)), at: time)
    }

    mutating func heartbeat(_ host: String, at time: Double, libvirt: Bool = true) {
        let (epoch, sequence) = next(host)
        receive(.heartbeat(Heartbeat(host: host, epoch: epoch, sequence: sequence, libvirtConnected: libvirt, domainCount: 0)), at: time)
    }

    mutating func delta(_ host: String, _ change: InventoryDelta.Change, at time: Double) {
        let (epoch, sequence) = next(host)
        receive(.delta(InventoryDelta(host: host, epoch: epoch, sequence: sequence, change: change, event: "test", eventTime: 0)), at: time)
    }

    func decide(_ action: FenceAction, _ target: String = "vm1", at time: Double = 1, trusted: Bool = true, actedAt: Double? = nil) -> RoutingDecision {
        RoutingRules.decide(action, DomainTarget(target), placement: RoutingRules.place(DomainTarget(target), in: inventory, now: at(time)), trusted: trusted,
                            actedAt: actedAt.map(at))
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
        let ignoredStale = world.receive(.snapshot(stale), at: 0.2)
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
        let ignoredOld = world.receive(.heartbeat(previous), at: 0.7)
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

    @Test("a domain the agent could not read after its event is not removed: the host is doubtful until its next snapshot")
    func unreadableDomain() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        world.delta("h1", .unreadable(uuid: vm.uuid, name: vm.name), at: 0.5)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(0.6), freshness: .seconds(3)) == .stale(reason: "vm1 could not be read after its event; waiting for a snapshot"))
        for action in FenceAction.allCases {
            #expect(isFailure(world.decide(action, at: 0.6)), "\(action)")
        }
        world.snapshot("h1", [vm], at: 0.7)
        #expect(world.decide(.off, at: 0.8) == .command(.off, hosts: ["h1", "h2"]))
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

    @Test("a message old by its sender's clock never makes a host live; its content still counts")
    func senderClock() {
        var world = World()
        let (epoch, sequence) = world.next("h1")
        let snapshot = BusMessage.snapshot(InventorySnapshot(host: "h1", epoch: epoch, sequence: sequence, libvirtConnected: true, domains: [vm]))
        #expect(world.receive(snapshot, at: 10, age: 5) == nil)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(10), freshness: .seconds(3)) == .stale(reason: "silent for 5000.0 ms"))
        #expect(isFailure(world.decide(.status, at: 10)))
        world.heartbeat("h1", at: 10.5)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(10.5), freshness: .seconds(3)) == .live)
        // Two seconds old: live for one more second.
        let (_, next) = world.next("h1")
        world.receive(.heartbeat(Heartbeat(host: "h1", epoch: epoch, sequence: next, libvirtConnected: true, domainCount: 0)), at: 20, age: 2)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(20.9), freshness: .seconds(3)) == .live)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(21.1), freshness: .seconds(3)) != .live)
        // A clock ahead of ours: heard on arrival, no later.
        world.receive(.heartbeat(Heartbeat(host: "h1", epoch: epoch, sequence: next + 1, libvirtConnected: true, domainCount: 0)), at: 30, age: -20)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(33.1), freshness: .seconds(3)) != .live)
    }

    @Test("an epoch later than the message's own time is ignored: it cannot make the host's real messages an older run")
    func futureEpoch() {
        var world = World()
        world.snapshot("h1", [vm])
        let poison = BusMessage.heartbeat(Heartbeat(host: "h1", epoch: UInt64.max, sequence: 1, libvirtConnected: true, domainCount: 0))
        #expect(world.receive(poison, at: 0.5) == .epochAfterSending)
        world.heartbeat("h1", at: 1)
        #expect(world.inventory.hosts["h1"]?.epoch == 100)
        #expect(world.inventory.hosts["h1"]?.liveness(now: world.at(1.1), freshness: .seconds(3)) == .live)
        // A delta whose event time is far in the future is applied like any other.
        let (epoch, sequence) = world.next("h1")
        let delta = BusMessage.delta(InventoryDelta(host: "h1", epoch: epoch, sequence: sequence, change: .updated(off(vm)), event: "stopped", eventTime: UInt64.max))
        #expect(world.receive(delta, at: 1.2) == nil)
    }

    @Test("configured hosts are expected from the start and cannot be forgotten; learned ones can; what a message changed")
    func expectedHosts() {
        var inventory = Inventory(configuredHosts: ["h1"])
        #expect(inventory.expectedHosts == ["h1"])
        let beat = { (host: String, sequence: UInt64) in BusMessage.heartbeat(Heartbeat(host: host, epoch: 1, sequence: sequence, libvirtConnected: true, domainCount: 0)) }
        #expect(inventory.apply(beat("h2", 1), sentAt: 2, receivedAt: 2, now: .now) == Inventory.Applied(learned: true))
        #expect(inventory.expectedHosts == ["h1", "h2"])
        #expect(inventory.apply(beat("h1", 1), sentAt: 2, receivedAt: 2, now: .now) == Inventory.Applied(), "configured, so not learned")
        #expect(inventory.apply(beat("h3", 1), sentAt: 0, receivedAt: 2, now: .now) == Inventory.Applied(ignored: .epochAfterSending), "ignored, so not learned")
        #expect(inventory.apply(beat("h2", 2), sentAt: 3, receivedAt: 3, now: .now) == Inventory.Applied())
        inventory.confirmDown("h2")
        #expect(inventory.apply(beat("h2", 2), sentAt: 3, receivedAt: 3, now: .now) == Inventory.Applied(ignored: .outOfOrder), "a replay ends nothing")
        #expect(inventory.hosts["h2"]?.confirmedDown == true)
        #expect(inventory.apply(beat("h2", 3), sentAt: 4, receivedAt: 4, now: .now) == Inventory.Applied(endedConfirmation: true))
        #expect(inventory.hosts["h2"]?.confirmedDown == false)
        let forgotConfigured = inventory.forget("h1")
        let forgotLearned = inventory.forget("h2")
        #expect(!forgotConfigured)
        #expect(forgotLearned)
        #expect(inventory.expectedHosts == ["h1"])
    }
}

@Suite("Routing rules")
struct RoutingRuleTests {
    @Test("running on exactly one live host: status is on from the inventory; off, reboot and on ask every live host")
    func oneHost() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        #expect(world.decide(.status) == .answer(.success))
        #expect(world.decide(.status, vm.uuid) == .answer(.success))
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2"]), "h2 may have it by now: it is asked too")
        #expect(world.decide(.reboot) == .reboot(hosts: ["h1", "h2"]))
        #expect(world.decide(.on) == .start(hosts: ["h1", "h2"]))
    }

    @Test("after this router acted on a domain, status asks where it runs until the inventory shows it running again")
    func actedOn() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        // An off finished at 0.5: the inventory (from 0) may not show its effect yet.
        #expect(world.decide(.status, at: 0.6, actedAt: 0.5) == .command(.status, hosts: ["h1"]))
        #expect(world.decide(.status, at: 0.6, actedAt: 0) == .command(.status, hosts: ["h1"]), "seen at the same instant is not after")
        // A newer message shows it running again: from the inventory.
        world.snapshot("h1", [vm], at: 0.7)
        #expect(world.decide(.status, at: 0.8, actedAt: 0.5) == .answer(.success))
        // Shut off by the delta of the off: every live host is asked, as ever.
        world.delta("h1", .updated(off(vm)), at: 0.9)
        #expect(world.decide(.status, at: 1, actedAt: 0.5) == .command(.status, hosts: ["h1", "h2"]))
    }

    @Test("running on two hosts (live migration): status answers on; off goes to every live host")
    func migration() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [vm], at: 0.5)
        #expect(world.decide(.status) == .answer(.success))
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2"]))
        #expect(world.decide(.reboot) == .reboot(hosts: ["h1", "h2"]))
    }

    @Test("defined only as shut off on live hosts: status and off ask every live host")
    func definedOff() {
        var world = World()
        world.snapshot("h1", [off(vm)])
        world.snapshot("h2", [])
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2"]))
        #expect(world.decide(.status) == .command(.status, hosts: ["h1", "h2"]))
        #expect(world.decide(.reboot) == .reboot(hosts: ["h1", "h2"]))
        #expect(world.decide(.on) == .start(hosts: ["h1", "h2"]))
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
        #expect(world.decide(.status, at: 5) == .answer(.success))
        #expect(isFailure(world.decide(.off, at: 5)))
    }

    @Test("an expected host that is not live blocks off, reboot, on and an off status of every domain, also of those it does not list")
    func unheardHostBlocksAbsence() {
        // Shared storage: defined on every host, running on one. h2 was learned before a router
        // restart and has not spoken since (its agent is down).
        var world = World()
        world.inventory.expect("h2")
        world.snapshot("h1", [off(vm)])
        world.snapshot("h3", [off(vm)])
        for action in FenceAction.allCases {
            #expect(isFailure(world.decide(action)), "\(action): h2 may run it")
        }
        #expect(isFailure(world.decide(.status, "ghost")))
        // Running on a live host: on, there, is known; off everywhere still is not.
        world.delta("h1", .updated(vm), at: 0.5)
        #expect(world.decide(.status) == .answer(.success))
        #expect(isFailure(world.decide(.on)), "starting it anywhere could make two copies run")
        #expect(isFailure(world.decide(.off)))
        #expect(isFailure(world.decide(.reboot)))
        // A host whose libvirt connection is lost, or which missed a message, is no better.
        world.snapshot("h2", [off(vm)], at: 0.6)
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2", "h3"]))
        world.heartbeat("h3", at: 0.7, libvirt: false)
        #expect(isFailure(world.decide(.off)))
        world.snapshot("h3", [off(vm)], at: 0.8)
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2", "h3"]))
        world.sequences["h3", default: 0] += 1   // one message of h3 lost
        world.heartbeat("h3", at: 0.9)
        #expect(isFailure(world.decide(.off)))
        // An operator's confirmation that the host is down lifts the block.
        world.inventory.confirmDown("h3")
        #expect(world.decide(.off) == .command(.off, hosts: ["h1", "h2"]))
    }

    @Test("a host confirmed down by the operator: its domains count as off; the live hosts are still asked")
    func confirmedDown() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        world.heartbeat("h2", at: 4)
        world.inventory.confirmDown("h1")
        #expect(world.decide(.status, at: 5) == .command(.status, hosts: ["h2"]))
        #expect(world.decide(.off, at: 5) == .command(.off, hosts: ["h2"]))
        #expect(world.decide(.on, at: 5) == .start(hosts: ["h2"]))
        world.inventory.confirmDown("h2")
        #expect(world.decide(.status, at: 5) == .answer(.off))
        #expect(world.decide(.off, at: 5) == .answer(.success))
        #expect(world.decide(.reboot, at: 5) == .answer(.success))
        #expect(isFailure(world.decide(.on, at: 5)), "nothing live to start it on")
        #expect(isFailure(world.decide(.off, "ghost", at: 5)), "an unknown domain is not off")
    }

    @Test("unknown everywhere while every expected host is live: every live host is asked, by name")
    func unknownAllLive() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        #expect(world.decide(.status, "ghost") == .command(.status, hosts: ["h1", "h2"]))
        #expect(world.decide(.off, "ghost") == .command(.off, hosts: ["h1", "h2"]))
        #expect(world.decide(.on, "ghost") == .start(hosts: ["h1", "h2"]))
    }

    @Test("unknown everywhere while an expected host is stale, or before the router can vouch: failure")
    func unknownNotAllLive() {
        var world = World()
        world.snapshot("h1", [vm])
        world.snapshot("h2", [])
        world.heartbeat("h1", at: 4)
        #expect(isFailure(world.decide(.status, "ghost", at: 5)))
        #expect(isFailure(world.decide(.off, "ghost", at: 5)))
        #expect(isFailure(World().decide(.status, "ghost")), "a router that knows no host vouches for nothing")
        var early = World()
        early.snapshot("h1", [vm])
        #expect(isFailure(early.decide(.status, "ghost", trusted: false)))
        #expect(early.decide(.off, trusted: false) == .command(.off, hosts: ["h1"]), "a known domain needs no warm-up")
    }

    @Test("a name used by two different domains is refused; their UUIDs are not")
    func ambiguousName() {
        var world = World()
        let other = DomainInfo(name: "vm1", uuid: "22222222-0000-4000-8000-000000000002", state: .running, persistent: true)
        world.snapshot("h1", [vm])
        world.snapshot("h2", [other])
        #expect(isFailure(world.decide(.off)))
        #expect(world.decide(.off, other.uuid) == .command(.off, hosts: ["h1", "h2"]))
    }
}

@Suite("What the agents' replies confirm")
struct ConfirmationTests {
    private static let other = DomainInfo(name: "vm1", uuid: "22222222-0000-4000-8000-000000000002", state: .shutOff, persistent: true)
    private static let notFound = CommandResult.Outcome.failed(code: "not-found", message: "no such domain")

    private func reply(_ host: String, _ outcome: CommandResult.Outcome, before: DomainInfo?, after: DomainInfo?) -> CommandReply {
        CommandReply(host: host, result: .success(CommandResult(commandID: "c-\(host)", host: host, outcome: outcome, before: before, observed: after)))
    }

    private func absent(_ host: String, _ action: FenceAction) -> CommandReply {
        reply(host, action == .off ? Self.notFound : .off, before: nil, after: nil)
    }

    private func believing(running: Set<String> = [], down: Bool = false, lastRanOn: String? = nil, uuid: String? = vm.uuid) -> Belief {
        Belief(uuid: uuid, believedRunning: running, onDownHosts: down, lastRanOn: lastRanOn)
    }

    private func failed(_ outcome: FenceOutcome) -> Bool {
        if case .failed = outcome { true } else { false }
    }

    @Test("off: destroyed where it ran, found off where defined off, absent elsewhere: success")
    func offConfirmed() {
        #expect(Confirmation.outcome(of: .off, given: believing(running: ["h1"]), replies: [
            reply("h1", .success, before: vm, after: off(vm)), reply("h2", .success, before: off(vm), after: off(vm)), absent("h3", .off),
        ]) == .success)
        let transient = DomainInfo(name: vm.name, uuid: vm.uuid, state: .running, persistent: false)
        #expect(Confirmation.outcome(of: .off, given: believing(running: ["h1"]), replies: [reply("h1", .success, before: transient, after: nil)]) == .success,
                "a transient domain is gone once destroyed")
    }

    @Test("off: found running and destroyed on a host the inventory did not have it on (a start not yet heard): success, and it is off")
    func offWhereNotBelieved() {
        #expect(Confirmation.outcome(of: .off, given: believing(), replies: [
            reply("h1", .success, before: vm, after: off(vm)), reply("h2", .success, before: off(vm), after: off(vm)),
        ]) == .success)
    }

    @Test("off: already off, or absent, where the inventory had it running is not a confirmation")
    func alreadyOffWhereItRan() {
        #expect(failed(Confirmation.outcome(of: .off, given: believing(running: ["h1"]), replies: [reply("h1", .success, before: off(vm), after: off(vm))])))
        #expect(failed(Confirmation.outcome(of: .off, given: believing(running: ["h1"]), replies: [absent("h1", .off)])))
    }

    @Test("off: absent on every live host is no such domain, unless a host confirmed down holds it")
    func offAbsentEverywhere() {
        #expect(failed(Confirmation.outcome(of: .off, given: believing(), replies: [absent("h1", .off), absent("h2", .off)])))
        #expect(Confirmation.outcome(of: .off, given: believing(down: true), replies: [absent("h1", .off)]) == .success)
    }

    @Test("a reply about another domain, or still running after off, is not a confirmation")
    func wrongDomain() {
        #expect(failed(Confirmation.outcome(of: .off, given: believing(), replies: [reply("h2", .success, before: Self.other, after: Self.other)])))
        #expect(failed(Confirmation.outcome(of: .status, given: believing(), replies: [reply("h2", .off, before: Self.other, after: Self.other)])))
        #expect(failed(Confirmation.outcome(of: .off, given: believing(running: ["h1"]), replies: [reply("h1", .success, before: vm, after: vm)])))
        // By name, unknown to the inventory: two hosts answering for different UUIDs.
        #expect(failed(Confirmation.outcome(of: .status, given: believing(uuid: nil), replies: [
            reply("h1", .off, before: off(vm), after: off(vm)), reply("h2", .off, before: Self.other, after: Self.other),
        ])))
    }

    @Test("status: on where it runs; off only when no host has it running and none where it was believed running says otherwise")
    func status() {
        #expect(Confirmation.outcome(of: .status, given: believing(running: ["h1"]), replies: [reply("h1", .success, before: vm, after: vm)]) == .success)
        #expect(Confirmation.outcome(of: .status, given: believing(), replies: [reply("h1", .off, before: off(vm), after: off(vm)), absent("h2", .status)]) == .off)
        #expect(Confirmation.outcome(of: .status, given: believing(), replies: [reply("h1", .off, before: off(vm), after: off(vm)), reply("h2", .success, before: vm, after: vm)]) == .success,
                "running where the inventory had it off: on")
        #expect(failed(Confirmation.outcome(of: .status, given: believing(running: ["h1"]), replies: [reply("h1", .off, before: off(vm), after: off(vm))])),
                "it may have moved to a host not asked")
        #expect(Confirmation.outcome(of: .status, given: believing(uuid: nil), replies: [absent("h1", .status), absent("h2", .status)]) == .off,
                "unknown on every live host: off, as the reference")
    }

    @Test("reboot: on again where the off found it running; where it last ran if that was two hosts; nowhere if it ran nowhere")
    func reboot() {
        let one = Confirmation.reboot(given: believing(running: ["h1"]), replies: [reply("h1", .success, before: vm, after: off(vm)), absent("h2", .off)])
        #expect(one.off == .success && one.restartOn == "h1")
        let unheard = Confirmation.reboot(given: believing(), replies: [reply("h1", .success, before: off(vm), after: off(vm)), reply("h2", .success, before: vm, after: off(vm))])
        #expect(unheard.off == .success && unheard.restartOn == "h2", "where it really ran, not where the inventory thought")
        let two = Confirmation.reboot(given: believing(running: ["h1", "h2"], lastRanOn: "h2"), replies: [
            reply("h1", .success, before: vm, after: off(vm)), reply("h2", .success, before: vm, after: off(vm)),
        ])
        #expect(two.off == .success && two.restartOn == "h2")
        let stayed = Confirmation.reboot(given: believing(), replies: [reply("h1", .success, before: off(vm), after: off(vm))])
        #expect(stayed.off == .success && stayed.restartOn == nil)
        let refused = Confirmation.reboot(given: believing(running: ["h1"]), replies: [reply("h1", .success, before: off(vm), after: off(vm))])
        #expect(failed(refused.off) && refused.restartOn == nil)
    }

    @Test("on: nothing started when it runs anywhere; otherwise on a host that holds it off, where it last ran if possible")
    func start() {
        let running = Confirmation.start(given: believing(), replies: [reply("h1", .off, before: off(vm), after: off(vm)), reply("h2", .success, before: vm, after: vm)])
        #expect(running.outcome == .success && running.startOn == nil)
        let choose = Confirmation.start(given: believing(lastRanOn: "h2"), replies: [reply("h1", .off, before: off(vm), after: off(vm)), reply("h2", .off, before: off(vm), after: off(vm))])
        #expect(choose.outcome == .success && choose.startOn == "h2")
        let nowhere = Confirmation.start(given: believing(), replies: [absent("h1", .status)])
        #expect(failed(nowhere.outcome) && nowhere.startOn == nil)
        #expect(Confirmation.outcome(of: .on, given: believing(), replies: [reply("h1", .success, before: off(vm), after: vm)]) == .success)
        #expect(failed(Confirmation.outcome(of: .on, given: believing(), replies: [reply("h1", .success, before: off(vm), after: off(vm))])))
    }

    @Test("failures, denials and missing replies fail the whole request")
    func failures() {
        #expect(Confirmation.outcome(of: .off, given: believing(), replies: [reply("h1", .denied, before: nil, after: nil)]) == .denied)
        #expect(failed(Confirmation.outcome(of: .off, given: believing(), replies: [reply("h1", .failed(code: "timed-out", message: "slow"), before: nil, after: nil)])))
        #expect(failed(Confirmation.outcome(of: .off, given: believing(), replies: [
            reply("h1", .success, before: off(vm), after: off(vm)), CommandReply(host: "h2", result: .failure(FenceFailure(.timedOut, "no answer"))),
        ])))
        #expect(failed(Confirmation.outcome(of: .status, given: believing(), replies: [reply("h1", Self.notFound, before: nil, after: nil)])),
                "a status that failed is not absence")
    }
}
