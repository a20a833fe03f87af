import ArgumentParser
import BusClient
import FenceBus

struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Tell every router something about a hypervisor host.",
        subcommands: [ConfirmDown.self, Forget.self]
    )

    struct ConfirmDown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "confirm-down",
            abstract: "Confirm that a host is down (powered off, fenced): its domains then count as off.",
            discussion: """
                Until a host that stopped answering is confirmed down, every request for a domain last seen on it fails: \
                it may still run there. Confirm only what you know, for example after the host cluster fenced it. The \
                confirmation lasts until the host speaks again; every router logs it for audit.
                """
        )

        @OptionGroup var bus: ConfigFileOption
        @OptionGroup var signer: OperatorOption
        @Argument(help: "The host, as its agent names itself on the bus.") var host: String
        @Flag(help: "Yes, the host is down: its domains may be reported off.") var yes = false

        func run() async throws {
            try await HostCommand.tell(.confirmDown, host, confirmed: yes, bus, signer,
                                       unconfirmed: "confirming \(host) down makes its domains count as off; add --yes if it is really down")
            print("routers told: \(host) is down")
        }
    }

    struct Forget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "forget",
            abstract: "Stop expecting a host that is gone for good (configured hosts cannot be forgotten).",
            discussion: """
                Routers remember every host they have heard, across restarts, and while one of them is silent they \
                cannot say that a domain is nowhere. Forgetting a silent host ends that: a domain it held then counts as \
                absent, so do it only for a host that is decommissioned. A host that speaks again is learned again.
                """
        )

        @OptionGroup var bus: ConfigFileOption
        @OptionGroup var signer: OperatorOption
        @Argument(help: "The host, as its agent names itself on the bus.") var host: String
        @Flag(help: "Yes, the host is gone for good: domains only it held may be reported off.") var yes = false

        func run() async throws {
            try await HostCommand.tell(.forget, host, confirmed: yes, bus, signer,
                                       unconfirmed: "forgetting \(host) makes the domains only it held count as absent; add --yes if it is gone for good")
            print("routers told: forget \(host)")
        }
    }

    /// Publishes an operator's statement about `host` to every router, once the operator said --yes.
    static func tell(_ change: HostStateChange.Change, _ host: String, confirmed: Bool, _ options: ConfigFileOption, _ signer: OperatorOption,
                     unconfirmed refusal: String) async throws {
        guard confirmed else { throw ValidationError(refusal) }
        try await BusSession.with(options, signer: signer.signer) { endpoint in
            let statement = HostStateChange(host: host, change: change, operatorName: endpoint.sender)
            try await endpoint.publish(.hostState(statement), to: endpoint.addresses.inventory, for: .everyRouter, timeToLive: .seconds(60), deadline: .now + .seconds(10))
        }
    }
}
