import ArgumentParser

@main
struct Fencectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fencectl",
        abstract: "The operator's tool for fence-router.",
        subcommands: [KeygenCommand.self, ConfigCommand.self, ConfigureCommand.self, InventoryCommand.self, HostCommand.self, FenceCommand.self]
    )
}

/// Options every command that talks to the bus shares.
struct BusOptions: ParsableArguments {
    @Option(name: .customShort("f"), help: ArgumentHelp("The configuration file with the backends/amqp block.", valueName: "file"))
    var configFile = "/etc/fence_virt.conf"
}
