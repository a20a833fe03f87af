import BusClient
import FenceBus

/// `fencectl host confirm-down` and `fencectl host forget`: an operator's statement about a host,
/// to every router.
protocol HostStatementCommand: Subcommand {
    static var change: HostStateChange.Change { get }
    /// What --yes says.
    static var yes: String { get }
    /// Why --yes is needed, when it is missing.
    static func refusal(_ host: String) -> String
    static func done(_ host: String) -> String
    var host: String { get }
    var configFile: String { get }
    var signer: BusSigner { get }
}

extension HostStatementCommand {
    static var yesOption: Usage.Option { .flag("yes", yes) }

    static func statementUsage(_ name: String, abstract: String, discussion: String) -> Usage {
        Usage(
            path: ["host", name], abstract: abstract, discussion: discussion,
            arguments: [Usage.Argument(name: "host", help: "The host, as its agent names itself on the bus.")],
            options: [.configFile] + OperatorSigner.options + [yesOption]
        )
    }

    /// Publishes the statement to every router, once the operator said --yes.
    func run() async throws -> ExitStatus {
        try await BusSession.with(configFile, signer: signer) { endpoint in
            let statement = HostStateChange(host: host, change: Self.change, operatorName: endpoint.sender)
            try await endpoint.publish(.hostState(statement), to: endpoint.addresses.inventory, for: .everyRouter, timeToLive: .seconds(60), deadline: .now + .seconds(10))
        }
        print(Self.done(host))
        return .success
    }
}

/// Reads the arguments every host statement takes.
private func hostStatement<C: HostStatementCommand>(_ line: ParsedCommandLine, _ command: C.Type) throws(UsageError) -> (host: String, configFile: String, signer: BusSigner) {
    let host = line.arguments[0]
    guard line.flag(C.yesOption) else { throw UsageError(C.refusal(host)) }
    return (host, line.value(defaulted: .configFile), OperatorSigner(line).signer)
}

struct ConfirmDownCommand: HostStatementCommand {
    static let change = HostStateChange.Change.confirmDown
    static let usage = statementUsage(
        "confirm-down",
        abstract: "Confirm that a host is down (powered off, fenced): its domains then count as off.",
        discussion: """
            Until a host that stopped answering is confirmed down, every request for a domain last seen on it fails: \
            it may still run there. Confirm only what you know, for example after the host cluster fenced it. The \
            confirmation lasts until the host speaks again; every router logs it for audit.
            """
    )
    static let yes = "Yes, the host is down: its domains may be reported off."
    static func refusal(_ host: String) -> String { "confirming \(host) down makes its domains count as off; add --yes if it is really down" }
    static func done(_ host: String) -> String { "routers told: \(host) is down" }

    let host: String, configFile: String, signer: BusSigner

    init(_ line: ParsedCommandLine) throws(UsageError) {
        (host, configFile, signer) = try hostStatement(line, Self.self)
    }
}

struct ForgetCommand: HostStatementCommand {
    static let change = HostStateChange.Change.forget
    static let usage = statementUsage(
        "forget",
        abstract: "Stop expecting a host that is gone for good (configured hosts cannot be forgotten).",
        discussion: """
            Routers remember every host they have heard, across restarts, and while one of them is silent they \
            cannot say that a domain is nowhere. Forgetting a silent host ends that: a domain it held then counts as \
            absent, so do it only for a host that is decommissioned. A host that speaks again is learned again.
            """
    )
    static let yes = "Yes, the host is gone for good: domains only it held may be reported off."
    static func refusal(_ host: String) -> String { "forgetting \(host) makes the domains only it held count as absent; add --yes if it is gone for good" }
    static func done(_ host: String) -> String { "routers told: forget \(host)" }

    let host: String, configFile: String, signer: BusSigner

    init(_ line: ParsedCommandLine) throws(UsageError) {
        (host, configFile, signer) = try hostStatement(line, Self.self)
    }
}
