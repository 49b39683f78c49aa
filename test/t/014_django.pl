# Django (Debian's python3-django and python3-psycopg2): each migration runs
# in its own transaction and records itself in django_migrations, in that
# transaction, or after it commits when the migration has deferred SQL
# (a foreign key); either way its change sets carry "app.name".  The
# corrupting migration (psycopg2 substitutes values on the client) is found
# by its name in one query, dry-run and restored (its django_migrations row
# deleted); showmigrations then lists it as unapplied, and migrate applies
# it again and unapplies it.
use strict;
use warnings;

use MigrationTools;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_guarded('django');
my $dir = PostgreSQL::Test::Utils::tempdir;
my @python = ('/usr/bin/python3', 'manage.py');

write_file("$dir/manage.py", <<'PY');
import os, sys
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shopsite.settings')
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
PY
write_file("$dir/shopsite/__init__.py", '');
write_file("$dir/shopsite/settings.py", <<'PY');
import os
SECRET_KEY = 'guard-test'
INSTALLED_APPS = ['shop']
DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql',
                         'NAME': os.environ['PGDATABASE'], 'HOST': os.environ['PGHOST'],
                         'PORT': os.environ['PGPORT'], 'USER': os.environ['PGUSER']}}
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
PY
write_file("$dir/shop/__init__.py", '');
write_file("$dir/shop/migrations/__init__.py", '');
write_file("$dir/shop/models.py", <<'PY');
from django.db import models
class Customer(models.Model):
    email = models.CharField(max_length=100)
    password_hash = models.CharField(max_length=100)
    login_count = models.IntegerField(null=True)
class Team(models.Model):
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(Customer, null=True, on_delete=models.SET_NULL)
PY
write_file("$dir/shop/migrations/0001_initial.py", <<'PY');
from django.db import migrations, models
class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [migrations.CreateModel(name='Customer', fields=[
        ('id', models.AutoField(primary_key=True, serialize=False)),
        ('email', models.CharField(max_length=100)),
        ('password_hash', models.CharField(max_length=100))])]
PY
write_file("$dir/shop/migrations/0002_login_count.py", <<'PY');
from django.db import migrations, models
def reset(apps, schema_editor):
    # the bug: meant for one customer, saves every one with a reset hash
    for c in apps.get_model('shop', 'Customer').objects.all():
        c.password_hash = 'reset'
        c.save()
class Migration(migrations.Migration):
    dependencies = [('shop', '0001_initial')]
    operations = [migrations.AddField('customer', 'login_count', models.IntegerField(null=True)),
                  migrations.RunPython(reset, migrations.RunPython.noop)]
PY
write_file("$dir/shop/migrations/0003_team.py", <<'PY');
from django.db import migrations, models
import django.db.models.deletion
def rename(apps, schema_editor):
    apps.get_model('shop', 'Customer').objects.filter(id=1).update(email='owner@example.com')
class Migration(migrations.Migration):
    dependencies = [('shop', '0002_login_count')]
    operations = [migrations.CreateModel(name='Team', fields=[
        ('id', models.AutoField(primary_key=True, serialize=False)),
        ('name', models.CharField(max_length=100)),
        ('owner', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    to='shop.customer'))]),
        migrations.RunPython(rename, migrations.RunPython.noop)]
PY

run_tool($node, $dir, [ @python, 'migrate', 'shop', '0001' ], 'migrate shop 0001');
$node->safe_psql('app', q{
INSERT INTO shop_customer (email, password_hash)
  SELECT 'user' || g || '@example.com', 'pbkdf2$' || md5(g::text) FROM generate_series(1, 5) g;
SELECT guard.protect('shop_customer');
});
my $before = $node->safe_psql('app', 'SELECT string_agg(password_hash, \',\' ORDER BY id) FROM shop_customer');
run_tool($node, $dir, [ @python, 'migrate', 'shop', '0002' ], 'migrate shop 0002');

my $cs = $node->safe_psql('app',
	q{SELECT string_agg(DISTINCT changeset_id::text, ',') FROM guard.changes WHERE label = 'shop.0002_login_count'});
like($cs, qr/^\d+$/, 'the migration is found by its name: one change set');
is($node->safe_psql('app', "SELECT string_agg(DISTINCT label_source, ',') FROM guard.changes WHERE changeset_id = $cs"),
	'django', 'labelled from django_migrations');

my $dry = $node->safe_psql('app',
	"SELECT relation, kind, sum(rows_restored) FROM guard.restore($cs, dry_run => true) GROUP BY 1, 2 ORDER BY 1, 2");
is($dry, "public.django_migrations|BOOKKEEPING DELETE|1\npublic.shop_customer|ADD COLUMN|0\npublic.shop_customer|UPDATE|5",
	'the dry run reports the column, the rows and the bookkeeping row');
$node->safe_psql('app', "SELECT * FROM guard.restore($cs)");
is($node->safe_psql('app', 'SELECT string_agg(password_hash, \',\' ORDER BY id) FROM shop_customer'),
	$before, 'the restore brings every password hash back');
is($node->safe_psql('app', q{SELECT count(*) FROM information_schema.columns WHERE table_name = 'shop_customer' AND column_name = 'login_count'}),
	'0', 'and drops the column the migration added');

my ($show) = run_tool($node, $dir, [ @python, 'showmigrations', 'shop' ], 'showmigrations works');
like($show, qr/\[X\] 0001_initial\s+\[ \] 0002_login_count\s+\[ \] 0003_team/,
	'showmigrations lists the restored migration as unapplied');

run_tool($node, $dir, [ @python, 'migrate' ], 'migrate applies it again, and 0003');
is($node->safe_psql('app', 'SELECT count(*) FROM shop_customer WHERE password_hash = \'reset\''), '5', 'it ran again');
# 0003 creates a foreign key, deferred SQL: Django records it after its
# transaction commits, and the row still names its changes
is($node->safe_psql('app', q{SELECT string_agg(kind || ' ' || label, ',') FROM guard.changes WHERE label = 'shop.0003_team'}),
	'UPDATE shop.0003_team', 'a migration recorded after its transaction is labelled too');

run_tool($node, $dir, [ @python, 'migrate', 'shop', '0001' ], 'migrate shop 0001 unapplies them');
is($node->safe_psql('app', q{SELECT string_agg(name, ',' ORDER BY id) FROM django_migrations WHERE app = 'shop'}),
	'0001_initial', 'Django records only 0001');

$node->stop;
done_testing();
