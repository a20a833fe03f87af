import FenceBus
import FenceCore

/// One host's answer to a command: its result, or why there is none.
public struct CommandReply: Hashable, Sendable {
    public let host: String
    public let result: Result<CommandResult, FenceFailure>

    public init(host: String, result: Result<CommandResult, FenceFailure>) {
        self.host = host
        self.result = result
    }
}

/// What the router believed when it sent the commands, for judging the replies.
public struct Belief: Hashable, Sendable {
    /// The domain meant; nil when the inventory knows no domain by that name (the first UUID a
    /// reply names then stands for it, and every other reply must name the same).
    public var uuid: String?
    /// The hosts the inventory showed it running on.
    public var believedRunning: Set<String>
    /// Listed on a host an operator confirmed down: it counts as off there.
    public var onDownHosts: Bool
    /// Where it last ran, to choose where a reboot or an `on` starts it.
    public var lastRanOn: String?

    public init(uuid: String?, believedRunning: Set<String> = [], onDownHosts: Bool = false, lastRanOn: String? = nil) {
        self.uuid = uuid
        self.believedRunning = believedRunning
        self.onDownHosts = onDownHosts
        self.lastRanOn = lastRanOn
    }
}

/// Whether the agents' replies prove what the guest is told, and where to start a domain. Pure.
///
/// A reply tells only what its agent read under the domain's lock: the domain before acting and
/// after, about the UUID the router meant. Any failure, any reply about another domain, and any
/// state the action does not lead to fail the whole request. "Already off" or "not here" from a
/// host the inventory had it running on is not a confirmation either: it may have moved to a host
/// whose agent read before it arrived; the guest gets failure and asks again.
public enum Confirmation {
    /// What one host reported, once checked.
    public struct Finding: Hashable, Sendable {
        public let host: String
        public let before: DomainInfo?
        public let after: DomainInfo?
        /// The agent found no such domain.
        public var absent: Bool { before == nil && after == nil }
    }

    /// The outcome of `off` or `status` asked of every host in `replies`, or of `on` sent where
    /// `start` chose.
    public static func outcome(of action: FenceAction, given belief: Belief, replies: [CommandReply]) -> FenceOutcome {
        switch findings(action, belief, replies) {
        case .failure(let failure):
            return failure.outcome
        case .success(let findings):
            return conclude(action, belief, findings)
        }
    }

    /// A reboot: the off on every host in `replies`, and where to start it again (nil: it ran
    /// nowhere, so it stays off). Not `.success`: the off failed, and nothing is started.
    public static func reboot(given belief: Belief, replies: [CommandReply]) -> (off: FenceOutcome, restartOn: String?) {
        switch findings(.off, belief, replies) {
        case .failure(let failure):
            return (failure.outcome, nil)
        case .success(let findings):
            let off = conclude(.off, belief, findings)
            guard off == .success else { return (off, nil) }
            let ran = findings.filter { $0.before.map { !$0.state.isOff } ?? false }.map(\.host).sorted()
            return (.success, ran.count > 1 ? (belief.lastRanOn.flatMap { ran.contains($0) ? $0 : nil } ?? ran[0]) : ran.first)
        }
    }

    /// `on`, from a status asked of every host in `replies`: success when it runs already, or the
    /// host to start it on (one that holds it shut off; where it last ran if that is one).
    public static func start(given belief: Belief, replies: [CommandReply]) -> (outcome: FenceOutcome, startOn: String?) {
        switch findings(.status, belief, replies) {
        case .failure(let failure):
            return (failure.outcome, nil)
        case .success(let findings):
            if findings.contains(where: { $0.after.map { !$0.state.isOff } ?? false }) { return (.success, nil) }
            let holders = findings.filter { $0.after?.state == .shutOff }.map(\.host).sorted()
            guard let first = holders.first else {
                return (.failed(FenceFailure(.notFound, "no live host holds the domain")), nil)
            }
            return (.success, belief.lastRanOn.flatMap { holders.contains($0) ? $0 : nil } ?? first)
        }
    }

    /// Why the replies cannot be added up.
    struct Refusal: Error {
        let outcome: FenceOutcome
    }

    /// Checks each reply on its own: answered, about the domain meant, in a state the action
    /// leads to, and not contradicting the inventory's belief.
    static func findings(_ action: FenceAction, _ belief: Belief, _ replies: [CommandReply]) -> Result<[Finding], Refusal> {
        var uuid = belief.uuid
        var findings: [Finding] = []
        for reply in replies.sorted(by: { $0.host < $1.host }) {
            func refuse(_ why: String) -> Result<[Finding], Refusal> {
                .failure(Refusal(outcome: .failed(FenceFailure(.operationFailed, "\(reply.host): \(why); not a confirmation of \(action.rawValue)"))))
            }
            let result: CommandResult
            switch reply.result {
            case .failure(let failure):
                return .failure(Refusal(outcome: .failed(failure)))
            case .success(let value):
                result = value
            }
            var finding = Finding(host: reply.host, before: result.before, after: result.observed)
            switch result.outcome {
            case .denied:
                return .failure(Refusal(outcome: .denied))
            case .failed(FenceFailure.Code.notFound.rawValue, _) where action == .off:
                finding = Finding(host: reply.host, before: nil, after: nil)
            case .failed(let code, let message):
                return .failure(Refusal(outcome: .failed(FenceFailure(FenceFailure.Code(rawValue: code) ?? .operationFailed, "\(reply.host): \(message)"))))
            case .success, .off:
                break
            }
            for seen in [finding.before, finding.after].compactMap({ $0 }) {
                if uuid == nil { uuid = seen.uuid }
                guard seen.uuid == uuid else { return refuse("answered for domain \(seen.uuid), not \(uuid ?? "")") }
            }
            let ranThere = belief.believedRunning.contains(reply.host)
            let ranBefore = finding.before.map { !$0.state.isOff } ?? false
            switch (action, result.outcome, finding.after?.state) {
            case (.off, _, nil), (.off, _, .shutOff?):
                if ranThere, !ranBefore {
                    return refuse("found it \(finding.before.map { "\($0.state)" } ?? "absent") where it was running")
                }
            case (.status, .success, let state?) where !state.isOff, (.on, .success, let state?) where !state.isOff:
                break
            case (.status, .off, .shutOff?), (.status, .off, nil):
                if ranThere { return refuse("found it \(finding.after == nil ? "absent" : "shut off") where it was running") }
            default:
                return refuse("answered \(result.outcome) with the domain \(finding.after.map { "\($0.state)" } ?? "gone")")
            }
            findings.append(finding)
        }
        return .success(findings)
    }

    private static func conclude(_ action: FenceAction, _ belief: Belief, _ findings: [Finding]) -> FenceOutcome {
        switch action {
        case .status: return findings.contains { $0.after.map { !$0.state.isOff } ?? false } ? .success : .off
        case .on, .reboot: return .success
        case .off: break
        }
        // Off: every host left it off or gone; absent everywhere is "no such domain" unless it
        // counts as off on a host confirmed down.
        if findings.allSatisfy(\.absent), !belief.onDownHosts {
            return .failed(FenceFailure(.notFound, "no live host has the domain"))
        }
        return .success
    }
}
