import BusClient
import FenceBus

/// One of an operator's statements about a host (`fencectl host confirm-down`, `host forget`):
/// what it changes and the words fencectl says around it.
protocol HostStatement {
    static var change: HostStateChange.Change { get }
    static var name: String { get }
    static var abstract: String { get }
    static var discussion: String { get }
    /// What --yes says.
    static var yes: String { get }
    /// Why --yes is needed, when it is missing.
    static func refusal(_ host: String) -> String
    static func done(_ host: String) -> String
}

/// Publishes a statement about a host to every router, once the operator said --yes.
struct HostStatementCommand<Statement: HostStatement>: Subcommand {
    static var yesOption: Usage.Option { .flag("yes", Statement.yes) }

    static var usage: Usage {
        Usage(
            path: ["host", Statement.name], abstract: Statement.abstract, discussion: Statement.discussion,
            arguments: [Usage.Argument(name: "host", help: "The host, as its agent names itself on the bus.")],
            options: [.configFile] + OperatorSigner.options + [yesOption]
        )
    }

    let host: String, configFile: String, signer: BusSigner

    init(_ line: ParsedCommandLine) throws(UsageError) {
        host = line.arguments[0]
        guard line.flag(Self.yesOption) else { throw UsageError(Statement.refusal(host)) }
        configFile = line.value(defaulted: .configFile)
        signer = OperatorSigner(line).signer
    }

    func run() async throws -> ExitStatus {
        try await BusSession.with(configFile, signer: signer) { endpoint in
            let statement = HostStateChange(host: host, change: Statement.change, operatorName: endpoint.sender)
            try await endpoint.publish(.hostState(statement), to: endpoint.addresses.inventory, for: .everyRouter, timeToLive: .seconds(60), deadline: .now + .seconds(10))
        }
        print(Statement.done(host))
        return .success
    }
}

enum ConfirmDown: HostStatement {
    static let change = HostStateChange.Change.confirmDown
    static let name = "confirm-down"
    static let abstract = "Confirm that a host is down (powered off, fenced): its domains then count as off."
    static let discussion = """
        Until a host that stopped answering is confirmed down, every request for a domain last seen on it fails: \
        it may still run there. Confirm only what you know, for example after the host cluster fenced it. The \
        confirmation lasts until the host speaks again; every router logs it for audit.
        """
    static let yes = "Yes, the host is down: its domains may be reported off."
    static func refusal(_ host: String) -> String { "confirming \(host) down makes its domains count as off; add --yes if it is really down" }
    static func done(_ host: String) -> String { "routers told: \(host) is down" }
}

enum Forget: HostStatement {
    static let change = HostStateChange.Change.forget
    static let name = "forget"
    static let abstract = "Stop expecting a host that is gone for good (configured hosts cannot be forgotten)."
    static let discussion = """
        Routers remember every host they have heard, across restarts, and while one of them is silent they \
        cannot say that a domain is nowhere. Forgetting a silent host ends that: a domain it held then counts as \
        absent, so do it only for a host that is decommissioned. A host that speaks again is learned again.
        """
    static let yes = "Yes, the host is gone for good: domains only it held may be reported off."
    static func refusal(_ host: String) -> String { "forgetting \(host) makes the domains only it held count as absent; add --yes if it is gone for good" }
    static func done(_ host: String) -> String { "routers told: forget \(host)" }
}
