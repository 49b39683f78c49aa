# GuardFuzz::Session: a psql session for test/t/010_fuzz_functions.pl,
# fed one statement (or a few) at a time, like PostgreSQL::Test's
# BackgroundPsql, but it survives the death of its psql (a crashed backend
# is what the fuzz test looks for) and reports the errors of each
# statement with their SQLSTATE.
package GuardFuzz::Session;

use strict;
use warnings;

use IPC::Run;

# Start psql as $user and run $setup in it.
sub new
{
	my ($class, $node, $user, $setup) = @_;
	my $self = bless { in => '', out => '', err => '', n => 0 }, $class;
	$self->{timer} = IPC::Run::timeout(60);
	$self->{h} = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq', '-f', '-',
			'-d', $node->connstr('postgres') . " user=$user"
		],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err},
		$self->{timer});
	my $r = $self->run("\\set VERBOSITY verbose\n$setup");
	die "cannot start a session as $user: @{ $r->{errors} }"
	  if $r->{lost} || @{ $r->{errors} };
	return $self;
}

# Run $sql; return its output, its errors ("ERROR:  SQLSTATE: message"
# lines) and whether the connection was lost.
sub run
{
	my ($self, $sql) = @_;
	my $mark = 'fuzz-mark-' . ++$self->{n};
	my $lost = 0;
	$self->{in} .= "$sql\n;\n\\echo '$mark'\n\\warn '$mark'\n";
	$self->{timer}->start(60);
	eval {
		until ($self->{out} =~ /^$mark\n/m && $self->{err} =~ /^$mark\n/m)
		{
			die "psql exited\n" unless $self->{h}->pumpable;
			$self->{h}->pump;
		}
		1;
	} or $lost = 1;
	my ($out, $err) = ($self->{out}, $self->{err});
	$self->{out} = $self->{err} = '';
	$out =~ s/^$mark\n//m;
	$err =~ s/^$mark\n//m;
	my @errors = $err =~ /^(?:psql:[^:]*:\d+: )?((?:ERROR|FATAL|PANIC):.*)$/mg;
	$lost = 1 if $err =~ /connection to server was lost|server closed the connection/;
	chomp $out;
	return { out => $out, errors => \@errors, lost => $lost, stderr => $err };
}

# End psql, whether it still runs or not.
sub quit
{
	my ($self) = @_;
	$self->{in} .= "\\q\n";
	eval { $self->{h}->finish; };
	eval { $self->{h}->kill_kill; } if $@;
	return;
}

1;
