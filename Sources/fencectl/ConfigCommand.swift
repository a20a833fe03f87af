import ArgumentParser
import DaemonSupport
import FenceBus
import FenceConfig
import JSONValue

struct ConfigureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "configure",
        abstract: "Ask the configuration questions and write the configuration file (as fence-routerd -c).",
        discussion: "The questions of fence_virtd -c, in its order, then those of the amqp backend. Enter keeps the answer in brackets; answers may be piped, one per line. The result is checked and shown, and written only after a yes."
    )

    @OptionGroup var file: ConfigFileOption

    func run() throws {
        let status = Configurator.run(path: file.configFile)
        if status != 0 { throw ExitCode(status) }
    }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check configuration files.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Parse and validate a configuration; print the settings in effect, defaults included.",
            discussion: "Checks what fence-routerd reads (when the file has a fence_virtd block) and what fence-hostd reads (when it has both backends/amqp and backends/libvirt), and that the key files they name exist, are private and hold a usable key. Exits 1 with file:line:key on the first error."
        )

        @Option(name: .customShort("f"), help: ArgumentHelp("The file to check, as in the other subcommands.", valueName: "file"))
        var configFile: String?

        @Argument(help: ArgumentHelp("The file to check (default: /etc/fence_virt.conf).", valueName: "file"))
        var file: String?

        func validate() throws {
            if let configFile, let file, configFile != file {
                throw ValidationError("two files to check: -f \(configFile) and \(file)")
            }
        }

        @Flag(help: "Print JSON.")
        var json = false

        @Flag(help: "Do not look at the key and certificate files (when checking a file meant for another machine).")
        var skipFiles = false

        func run() throws {
            let report = ConfigurationCheck.run(file: configFile ?? file ?? "/etc/fence_virt.conf", checkFiles: !skipFiles, hostname: Hostname.current())
            print(json ? report.json : report.text, terminator: "")
            if !json {
                for error in report.errors { StandardError.write("error: \(error)\n") }
            }
            if !report.errors.isEmpty { throw ExitCode.failure }
        }
    }
}
